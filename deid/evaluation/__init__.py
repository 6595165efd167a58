"""The audit: attackers, linkage, face metrics, fidelity and k-anonymity of de-identified sets."""
