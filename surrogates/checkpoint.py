"""On-disk cache of trained surrogates, keyed by (data fingerprint, config, model version).

A run that finds a checkpoint for the same data and configuration reuses it instead of retraining.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import zipfile
from pathlib import Path

import torch

from datasets.data import MultiomeData
from datasets.files import atomic_path, cache_root, move_aside
from surrogates.model import MODEL_VERSION, Surrogate, SurrogateConfig
from surrogates.train import build_surrogate, resolve_device, train_surrogate

log = logging.getLogger(__name__)


def checkpoint_key(data: MultiomeData, config: SurrogateConfig) -> str:
    # only the screen style reads a screen: the others' checkpoints are those of the observational cells alone
    payload = json.dumps({"data": data.fingerprint(screen=config.style == "screen"), "config": config.to_dict(),
                          "model": MODEL_VERSION},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def checkpoint_path(data: MultiomeData, config: SurrogateConfig, cache_dir=None) -> Path:
    return cache_root(cache_dir) / "surrogates" / f"surrogate-{checkpoint_key(data, config)}.pt"


def checkpoint_name(path) -> str:
    """A checkpoint's cache key as the tables print it ('surrogate-57956fff1a8efb73'), from its path or meta entry;
    '' for none. Committed outputs name checkpoints this way, never by a path on the machine that made them."""
    return Path(str(path)).stem if path else ""


def save_surrogate(model: Surrogate, path) -> Path:
    payload = {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
               "config": model.config.to_dict(), "gene_names": model.gene_names,
               "cell_types": model.cell_types, "meta": model.meta, "model_version": MODEL_VERSION}
    with atomic_path(path) as tmp:  # readers never see a half-written checkpoint
        torch.save(payload, tmp)
    return path


def load_surrogate(path, data: MultiomeData, device: str = "auto") -> Surrogate:
    return _read_checkpoint(path, data).to(resolve_device(device)).eval()


def _read_checkpoint(path, data: MultiomeData) -> Surrogate:
    """The checkpoint's model on the CPU (errors here mean the file is damaged or not ours)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = build_surrogate(data, SurrogateConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.meta = {**payload.get("meta", {}), "checkpoint": str(path)}
    return model


def fit_or_load(data: MultiomeData, config: SurrogateConfig = SurrogateConfig(), device: str = "auto",
                cache_dir=None, retrain: bool = False, progress: bool = True) -> Surrogate:
    """The cached surrogate for (data, config) if one exists, else train one and cache it. A checkpoint that cannot
    be read (truncated, or not ours) is reported in one line, moved to `surrogates/corrupt/`, and retrained.
    The locus and screen styles are the paired checkpoint of the same settings plus their own layer's checkpoint."""
    if config.style in ("locus", "screen"):
        return _fit_or_load_layered(data, config, device, cache_dir, retrain, progress)
    path = checkpoint_path(data, config, cache_dir)
    if path.exists() and not retrain:
        dev = resolve_device(device)  # a device error is the user's, not a sign of a corrupt file
        try:  # only reading is guarded: a device error while moving the model is not the file's fault
            model = _read_checkpoint(path, data)
        except (RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError,
                zipfile.BadZipFile) as exc:
            dest = move_aside(path, path.parent / "corrupt")
            log.warning("corrupt surrogate checkpoint %s (%s: %s); %s, retraining", path, type(exc).__name__,
                        str(exc).splitlines()[0][:200] if str(exc) else "",
                        f"moved to {dest}" if dest else "could not move it aside")
        else:
            log.info("reusing surrogate checkpoint %s", path)
            model = model.to(dev).eval()
            model.meta["reused"] = True
            return model
    model = train_surrogate(data, config, device=device, progress=progress)
    save_surrogate(model, path)
    model.meta.update({"checkpoint": str(path), "reused": False})
    return model


def _fit_or_load_layered(data: MultiomeData, config: SurrogateConfig, device: str, cache_dir, retrain: bool,
                         progress: bool):
    """The paired base (shared with `--surrogate paired`) and the locus or screen layer fitted on it, each cached."""
    from dataclasses import replace

    from surrogates.locus import fit_cis_layer, load_cis_layer
    from surrogates.model import torch_threads
    from surrogates.screen import fit_screen_layer, load_screen_layer, screen_pairs

    if config.style == "screen":
        screen_pairs(data, config.cis_window)  # no screen: say so before the base trains
        load_layer = load_screen_layer

        def fit_layer(base):
            return fit_screen_layer(base, data, or_units=config.screen_or_units, and_units=config.screen_and_units,
                                    window=config.cis_window, sparsity=config.screen_sparsity, lr=config.screen_lr,
                                    seed=config.seed, progress=progress)
    else:
        load_layer = load_cis_layer

        def fit_layer(base):
            return fit_cis_layer(base, data, units=config.cis_units, window=config.cis_window, lr=config.cis_lr,
                                 seed=config.seed, progress=progress, monotone=config.cis_monotone)

    base = fit_or_load(data, replace(config, style="paired"), device, cache_dir, retrain, progress)
    path = checkpoint_path(data, config, cache_dir)
    if path.exists() and not retrain:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
            if payload["meta"].get("base") != checkpoint_name(base.meta.get("checkpoint")):
                raise ValueError("fitted on another paired base")  # e.g. the base was retrained: refit
            model = load_layer(base, data, config, payload["state_dict"])
            if payload["meta"].get("cis_pairs_digest") != model.meta.get("cis_pairs_digest"):
                raise ValueError("fitted on other gene windows")  # same matrices, another gene annotation
        except (RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError,
                zipfile.BadZipFile) as exc:
            dest = move_aside(path, path.parent / "corrupt")
            log.warning("unusable layer checkpoint %s (%s: %s); %s, refitting", path, type(exc).__name__, exc,
                        f"moved to {dest}" if dest else "could not move it aside")
        else:
            log.info("reusing %s-layer checkpoint %s", config.style, path)
            model.meta = {**payload.get("meta", {}), "checkpoint": str(path), "reused": True}
            return model.eval()
    with torch_threads(config.threads):
        torch.manual_seed(config.seed)
        model = fit_layer(base)
    meta = {k: v for k, v in model.meta.items() if k not in ("checkpoint", "reused")}
    meta["base"] = checkpoint_name(base.meta.get("checkpoint"))
    with atomic_path(path) as tmp:
        torch.save({"state_dict": {k: v.cpu() for k, v in model.cis.state_dict().items()},
                    "config": config.to_dict(), "meta": meta, "model_version": MODEL_VERSION}, tmp)
    model.meta = {**meta, "checkpoint": str(path), "reused": False}
    return model
