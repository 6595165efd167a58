"""Face autoencoders for latent-shift de-identification, and their batched training loop.

Networks (after Nousi et al., "Deep autoencoders for attribute preserving face de-identification"):

- :class:`FCAutoencoder`: flatten → fully connected encoder (the paper's best is
  4096–1024–768–512 for 64×64 gray faces) → symmetric decoder → sigmoid.
- :class:`ConvAutoencoder`: 3×3 conv + 2×2 max-pool blocks down to a ``(256, 2, 2)`` code,
  mirrored by nearest upsampling + 3×3 conv blocks.
- :class:`Deblurrer` (four 3×3 conv layers, no downsampling, residual) and :class:`Smoother`
  (a shallow conv autoencoder): the optional post-processing nets, each trained on its own.

Every network works at a fixed square ``image_size``; :func:`to_net` / :func:`from_net` resize
``(B, C, H, W)`` batches into and out of it, so one method fits 32, 50 or 64 px inputs.

Training and inference run in batches through a ``DataLoader`` on the device chosen by
:func:`deid.device.resolve_device`, with mixed precision on CUDA; :class:`ParquetImageBatches`
streams an image table by Parquet row group for data that does not fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, SequentialSampler, TensorDataset

from deid.errors import ConfigError

__all__ = [
    "FCAutoencoder",
    "ConvAutoencoder",
    "Deblurrer",
    "Smoother",
    "to_net",
    "from_net",
    "gaussian_blur",
    "train_regression",
    "predict",
    "ParquetImageBatches",
    "iter_image_batches",
]


# -- networks -----------------------------------------------------------------------------
class FCAutoencoder(nn.Module):
    """Fully connected autoencoder on ``(B, C, S, S)`` images; code ``(B, hidden[-1])``."""

    def __init__(self, channels: int, image_size: int, hidden: Iterable[int] = (1024, 768, 512)):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"fc autoencoder: hidden sizes must be positive, got {hidden}")
        self.channels, self.image_size = int(channels), int(image_size)
        dims = [self.channels * self.image_size**2, *hidden]
        enc: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            enc.append(nn.Linear(a, b))
            if i < len(hidden) - 1:  # the code layer stays linear
                enc.append(nn.ReLU(inplace=True))
        dec: list[nn.Module] = []
        rev = dims[::-1]
        for i, (a, b) in enumerate(zip(rev[:-1], rev[1:])):
            dec.append(nn.Linear(a, b))
            dec.append(nn.ReLU(inplace=True) if i < len(rev) - 2 else nn.Sigmoid())
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.code_shape = (hidden[-1],)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S)`` → ``(B, D)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` → ``(B, C, S, S)`` in ``[0, 1]``."""
        return self.decoder(z).view(-1, self.channels, self.image_size, self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class ConvAutoencoder(nn.Module):
    """Fully convolutional autoencoder: ``(B, C, S, S)`` → code ``(B, code_channels, 2, 2)``.

    ``S`` must be a power of two ≥ 4; there are ``log2(S / 2)`` conv + max-pool blocks with
    widths ``min(code_channels, width · 2^i)``, the last one ``code_channels`` wide.
    """

    def __init__(self, channels: int, image_size: int, width: int = 32, code_channels: int = 256):
        super().__init__()
        s = int(image_size)
        if s < 4 or s & (s - 1):
            raise ConfigError(f"conv autoencoder: image_size must be a power of two >= 4, got {image_size}")
        self.channels, self.image_size = int(channels), s
        n = int(math.log2(s // 2))
        widths = [min(code_channels, width * 2**i) for i in range(n - 1)] + [int(code_channels)]
        enc: list[nn.Module] = []
        prev = self.channels
        for i, w in enumerate(widths):
            enc.append(nn.Conv2d(prev, w, 3, padding=1))
            if i < n - 1:
                enc.append(nn.LeakyReLU(0.2, inplace=True))
            enc.append(nn.MaxPool2d(2))
            prev = w
        dec: list[nn.Module] = []
        back = widths[::-1][1:] + [width]
        for w in back:
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(prev, w, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            prev = w
        dec.append(nn.Conv2d(prev, self.channels, 3, padding=1))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.code_shape = (int(code_channels), 2, 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S)`` → ``(B, code_channels, 2, 2)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, code_channels, 2, 2)`` → ``(B, C, S, S)``; clipped to ``[0, 1]`` in eval mode.

        The output layer is linear while training (a sigmoid here saturates and the net collapses
        to a constant image), clipped when applied.
        """
        y = self.decoder(z)
        return y if self.training else y.clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class Deblurrer(nn.Module):
    """Four 3×3 conv layers, no downsampling, predicting a residual: ``(B, C, S, S)`` → same."""

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        c, w = int(channels), int(width)
        self.net = nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(w, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.net(x)).clamp(0.0, 1.0)


class Smoother(nn.Module):
    """A shallow conv autoencoder (one stride-2 step) trained to reconstruct faces: ``(B, C, S, S)``."""

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        c, w = int(channels), int(width)
        self.net = nn.Sequential(nn.Conv2d(c, w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Upsample(scale_factor=2, mode="nearest"),
                                 nn.Conv2d(w, c, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.net(x)
        return y[..., :h, :w]


# -- resizing and blur --------------------------------------------------------------------
def to_net(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``(B, C, size, size)`` (antialiased bilinear); no-op when equal."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=x.shape[-1] > size, align_corners=False)


def from_net(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, C, S, S)`` back to ``(B, C, H, W)``, clipped to ``[0, 1]``."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    y = F.interpolate(x, size=tuple(hw), mode="bilinear", antialias=x.shape[-1] > hw[1], align_corners=False)
    return y.clamp(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Blur ``(B, C, H, W)`` with a Gaussian of std ``sigma`` px (scalar or ``(B,)``), reflect padding."""
    b, c, h, w = x.shape
    sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if sig.numel() == 1:
        sig = sig.expand(b)
    r = int(math.ceil(3 * float(sig.max())))
    r = max(1, min(r, min(h, w) // 2 - 1)) if min(h, w) > 3 else 1
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t[None, :] / sig[:, None].clamp_min(1e-3)) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, 2r+1)
    xp = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
    kk = k.repeat_interleave(c, 0)  # (B*C, 2r+1)
    y = F.conv2d(xp, kk[:, None, None, :], groups=b * c)
    y = F.conv2d(y, kk[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


# -- training and inference ---------------------------------------------------------------
def _amp(dev: torch.device):
    return torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda")


def _loader(tensors: list[torch.Tensor], batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Batches of whole index lists (one indexing op per batch, no per-sample collate)."""
    ds = TensorDataset(*tensors)
    if shuffle:
        g = torch.Generator().manual_seed(seed)
        sampler = BatchSampler(torch.utils.data.RandomSampler(ds, generator=g), batch_size, drop_last=False)
    else:
        sampler = BatchSampler(SequentialSampler(ds), batch_size, drop_last=False)
    return DataLoader(ds, sampler=sampler, batch_size=None, pin_memory=torch.cuda.is_available())


def train_regression(
    forward: Callable[[torch.Tensor], torch.Tensor],
    params: Iterable[nn.Parameter],
    inputs: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor | None = None,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    device: torch.device | str = "cpu",
    seed: int = 0,
    input_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    modules: Iterable[nn.Module] = (),
    on_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """Minimise mean squared error ``‖forward(input_fn(x)) − t‖²`` with Adam and a cosine learning-rate
    decay; returns the per-epoch mean losses.

    ``inputs`` ``(N, ...)`` and ``targets`` ``(N, ...)`` (``None``: reconstruct the inputs).
    ``input_fn`` corrupts a batch on the device (e.g. blur for the deblurrer). ``modules`` are put
    in train mode during the loop and eval mode after; ``on_epoch(epoch)`` runs after each epoch
    (in eval mode). Mixed precision on CUDA.
    """
    dev = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(np.ascontiguousarray(inputs, dtype=np.float32)) if isinstance(inputs, np.ndarray) else inputs
    tt = xt if targets is None else (torch.as_tensor(np.ascontiguousarray(targets, dtype=np.float32))
                                     if isinstance(targets, np.ndarray) else targets)
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    steps = max(1, int(epochs) * -(-len(xt) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.02)
    scaler = torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda")
    modules = list(modules)
    for m in modules:
        m.train()
    history: list[float] = []
    for epoch in range(int(epochs)):
        batches = _loader([xt, tt], batch_size, shuffle=True, seed=seed * 1000 + epoch)
        history.append(_regression_epoch(forward, batches, opt, sched, scaler, dev, input_fn, g))
        if on_epoch is not None:
            for m in modules:
                m.eval()
            on_epoch(epoch)
            for m in modules:
                m.train()
    for m in modules:
        m.eval()
    return history


def _regression_epoch(forward: Callable[[torch.Tensor], torch.Tensor], batches: DataLoader,
                      opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                      scaler: torch.amp.GradScaler, dev: torch.device,
                      input_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
                      g: torch.Generator) -> float:
    """One epoch of :func:`train_regression` over ``batches`` of (input, target): its mean squared error."""
    total, count = 0.0, 0
    for xb, tb in batches:
        xb, tb = xb.to(dev, non_blocking=True), tb.to(dev, non_blocking=True)
        if input_fn is not None:
            xb = input_fn(xb, g)
        opt.zero_grad(set_to_none=True)
        with _amp(dev):
            loss = F.mse_loss(forward(xb).float(), tb.float())
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        total += float(loss.detach()) * len(xb)
        count += len(xb)
    return total / max(1, count)


@torch.no_grad()
def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    X: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Apply ``forward`` to ``X`` ``(N, ...)`` in batches on ``device``; returns float32 numpy ``(N, ...)``."""
    dev = torch.device(device)
    xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32)) if isinstance(X, np.ndarray) else X
    out = []
    for (xb,) in _loader([xt], batch_size, shuffle=False):
        with _amp(dev):
            out.append(forward(xb.to(dev, non_blocking=True)).float().cpu())
    return torch.cat(out).numpy()


# -- streaming from Parquet ---------------------------------------------------------------
class ParquetImageBatches(IterableDataset):
    """Yield ``(X, rows)`` per Parquet row group (or ``batch_size`` slice) of an image table.

    ``X`` is float32 ``(B, C, H, W)`` in ``[0, 1]`` (decoded here, so DataLoader workers decode in
    parallel with the model); ``rows`` is the ``pyarrow.Table`` slice, without the image column
    unless ``keep_image`` is set. Memory stays at a few batches however large the table.
    """

    def __init__(self, path: str | Path, *, schema_name: str = "images", splits: tuple[str, ...] | None = None,
                 batch_size: int | None = None, columns: list[str] | None = None, keep_image: bool = False):
        self.path, self.schema_name, self.splits = Path(path), schema_name, splits
        self.batch_size, self.columns, self.keep_image = batch_size, columns, keep_image

    def _parts(self) -> list:
        from data_contracts import table_files

        return table_files(self.path)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, object]]:
        from data_contracts import iter_batches, schema_by_name
        from deid.imageio import images_to_array

        info = torch.utils.data.get_worker_info()
        files = self._parts()
        if info is not None:  # each worker streams its own files, in order
            files = files[info.id :: info.num_workers]
        for f in files:
            for t in iter_batches(f, schema_by_name(self.schema_name), columns=self.columns,
                                  splits=self.splits, batch_size=self.batch_size):
                X = torch.from_numpy(images_to_array(t.column("image")))
                yield X, (t if self.keep_image else t.drop_columns(["image"]))


def _identity(b):
    return b


def iter_image_batches(path: str | Path, *, num_workers: int = 0, **kw) -> DataLoader:
    """A ``DataLoader`` over :class:`ParquetImageBatches` (one item per batch, no re-collation).

    With ``num_workers > 0`` the table's files are split between workers, so batch order
    follows file order within each worker.
    """
    ds = ParquetImageBatches(path, **kw)
    return DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=_identity,
                      persistent_workers=False, prefetch_factor=2 if num_workers else None)
