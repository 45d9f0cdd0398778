"""Training the surrogate, in one of two styles (`SurrogateConfig.style`).

Shared pieces (paper, Appendix A): an ATAC autoencoder (per-peak embeddings → Enc_a → Dec_a), an RNA autoencoder
(Enc_r, Dec_r), cross-maps f_AR / f_RA between their 20-d latents, per-cell-type discriminators (γ = 0.3) and
cycle losses. The ATAC reconstruction is a focal BCE (exponent `focal_gamma`) balanced between open and closed
entries, as the reference does, and estimated on `recon_peaks` peaks drawn per batch (`atac_reconstruction`), so
its cost no longer grows with the number of peaks — at paper scale the full reconstruction was 37.6 s of a
40 s epoch.

* **paired** — everything at once on paired mini-batches: reconstruction of both modalities, the paired
  cross-prediction MSE(F̂(x), y) (F̂ = Dec_r ∘ f_AR ∘ Enc_a, the function every explainer perturbs), latent cycle
  ‖f_RA(f_AR(z_a)) − z_a‖² + ‖f_AR(f_RA(z_r)) − z_r‖² and γ · adversarial (per-cell-type discriminators D_r^k on
  f_AR(z_a) vs z_r and D_a^k on f_RA(z_r) vs z_a, trained in alternation). Early stopping on the validation
  cross-prediction MSE; the best weights are restored.
* **reference** — as the released reference code (jhliu17/nnpert, src/trainer_brain.py), in three phases of
  `reference_steps` mini-batch steps (reference: 36k / 9k / 36k; the profiles scale them to their budget):
  1. ATAC autoencoder alone (focal BCE); 2. RNA autoencoder alone (MSE, lr `cross_lr`);
  3. both autoencoders frozen; only f_AR / f_RA (gated per-cell-type affine maps, `GatedAffine`) learn, from
     ATAC and RNA mini-batches drawn *independently* (unpaired): L1 latent cycles, reconstruction cycles
     (focal BCE of Dec_a(f_RA(f_AR(z_a))) against x, MSE of Dec_r(f_AR(f_RA(z_r))) against y, divided by 5) and
     γ · cell-type-conditional adversarial terms (a mapped latent is judged by the discriminator of its own cell
     type); discriminators (lr `disc_lr`) every `disc_every` steps (see SurrogateConfig for why every step); gradients
  clipped at 1; Adam β = (0.9, 0.99). There is no paired loss, so F̂ is aligned at cell-type level and within-type
  effects of single peaks are not learned from the data. No early stopping (the reference keeps the final weights);
  the validation cross-prediction MSE is recorded for information only.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from datasets.data import MultiomeData
from surrogates.model import SparseAtac, Surrogate, SurrogateConfig, torch_threads

log = logging.getLogger(__name__)

ADAM_BETAS = (0.9, 0.99)  # the reference's Adam betas
RNA_CYCLE_DIVISOR = 5.0  # the reference divides its RNA cycle terms by λ2 = 5


class DeviceUnavailableError(ValueError):
    """The requested torch device does not exist on this machine (a user error, not a bug)."""


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' → CUDA when available, else CPU; DeviceUnavailableError for 'cuda' without a GPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("--device cuda was requested but no CUDA GPU is available; use --device auto "
                                     "or cpu")
    return torch.device(device)


def build_surrogate(data: MultiomeData, config: SurrogateConfig) -> Surrogate:
    chrom, _ = data.chrom_codes()
    return Surrogate(chrom, data.gene_names, data.cell_types, config)


# ---------------------------------------------------------------------------------------------- shared losses
def atac_reconstruction(model: Surrogate, z_a: torch.Tensor, batch: SparseAtac, config: SurrogateConfig,
                        gen: torch.Generator, sparse: bool = False) -> torch.Tensor:
    """Balanced focal BCE of Dec_a's reconstruction on `recon_peaks` peaks drawn uniformly for this batch.

    ℒ = ½ · mean over open entries + ½ · mean over closed entries (the reference's balanced loss), estimated on a
    random column subset C: Dec_a's last layer runs as one dense (cells × |C|) product. Uniform columns make both
    means unbiased estimates of the means over all peaks. Why columns and not entries: a 128-cell batch has open
    entries in nearly every peak (128 × 1,800 entries over 40,000 peaks at quick scale), so gathering one weight
    row per entry moved ~0.5 GB per batch and ran slower than the dense product; |C| = 4,096 costs a tenth of
    the full 40,000-column product at quick scale and a thirtieth at paper scale. `sparse`: the drawn rows of the
    last layer's weight come through `F.embedding(..., sparse=True)`, so its gradient is those rows only (for
    torch's SparseAdam, `SurrogateConfig.sparse_decoder`)."""
    n_cols = min(model.n_peaks, config.recon_peaks)
    dev = z_a.device
    cols = (torch.arange(model.n_peaks, device=dev) if n_cols == model.n_peaks
            else torch.randperm(model.n_peaks, generator=gen)[:n_cols].to(dev))
    where = torch.full((model.n_peaks,), -1, dtype=torch.long, device=dev)
    where[cols] = torch.arange(n_cols, device=dev)
    label = torch.zeros(batch.n_cells, n_cols, device=dev)
    hit = where[batch.idx] >= 0
    label[batch.row[hit], where[batch.idx[hit]]] = 1.0
    last = model.dec_a[-1]
    rows = F.embedding(cols, last.weight, sparse=True) if sparse else last.weight[cols]
    logits = model.dec_a[:-1](z_a) @ rows.T + last.bias[cols]
    bce = F.binary_cross_entropy_with_logits(logits, label, reduction="none")
    focal = (1.0 - torch.exp(-bce)) ** config.focal_gamma * bce if config.focal_gamma else bce
    n_open, n_all = float(label.sum()), label.numel()
    if n_open == 0 or n_open == n_all:
        return focal.mean()
    # ½ mean over open + ½ mean over closed entries, as one weighted sum (boolean indexing cost 4× more)
    weight = label * (0.5 / n_open - 0.5 / (n_all - n_open)) + 0.5 / (n_all - n_open)
    return (focal * weight).sum()


def _disc_logits(disc, z: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
    """Each cell is judged by its own cell type's output of the class-conditional discriminator."""
    return disc(z).gather(1, types.unsqueeze(1)).squeeze(1)


def _fooled(disc, fake: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
    logits = _disc_logits(disc, fake, types)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def _disc_loss(model: Surrogate, real_r, fake_r, types_r_real, types_r_fake, real_a, fake_a, types_a_real,
               types_a_fake) -> torch.Tensor:
    """D_r^k: real RNA latents vs f_AR(z_a); D_a^k: real ATAC latents vs f_RA(z_r) (inputs detached)."""
    loss = 0.0
    for disc, real, fake, t_real, t_fake in ((model.disc_r, real_r, fake_r, types_r_real, types_r_fake),
                                             (model.disc_a, real_a, fake_a, types_a_real, types_a_fake)):
        lr, lf = _disc_logits(disc, real.detach(), t_real), _disc_logits(disc, fake.detach(), t_fake)
        loss = loss + F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr)) \
            + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
    return loss


@torch.no_grad()
def validation_mse(model: Surrogate, data: MultiomeData) -> float:
    pred = model.predict(data.atac)
    return float(F.mse_loss(pred, torch.as_tensor(data.rna, device=pred.device)))


class _Split:
    """The tensors a training loop needs for one split, on the device."""

    def __init__(self, model: Surrogate, data: MultiomeData, dev: torch.device):
        codes = {t: i for i, t in enumerate(model.cell_types)}
        self.atac = data.atac
        self.rna = torch.as_tensor(data.rna, device=dev)
        self.types = torch.as_tensor([codes[t] for t in data.obs["cell_type"].astype(str)], device=dev)
        self.n = data.n_cells


def _params(model: Surrogate, prefixes: tuple[str, ...]):
    return [p for n, p in model.named_parameters() if n.startswith(prefixes)]


def _adam(params, config: SurrogateConfig, **settings) -> torch.optim.Adam:
    """torch's Adam, with its fused kernel when the configuration asks for it (`SurrogateConfig.fused_adam`)."""
    return torch.optim.Adam(params, fused=True if config.fused_adam else None, **settings)


ATAC_AE = ("emb_open", "emb_closed", "first.", "enc_a_rest.", "dec_a.")
RNA_AE = ("enc_r.", "dec_r.")
EMBEDDINGS = ("emb_open", "emb_closed")
CROSS_MAPS = ("f_ar.", "f_ra.")
DISCRIMINATORS = ("disc_a.", "disc_r.")


# ---------------------------------------------------------------------------------------------- paired style
def _train_paired(model: Surrogate, train: _Split, val: MultiomeData, config: SurrogateConfig, rng, gen,
                  progress: bool, on_epoch=None) -> dict:
    emb = _params(model, EMBEDDINGS)
    lazy = [model.dec_a[-1].weight] if config.sparse_decoder else []
    dense = [p for p in _params(model, ATAC_AE + RNA_AE + CROSS_MAPS) if not any(p is q for q in lazy)]
    rest = [p for p in dense if not any(p is q for q in emb)]
    groups = [{"params": emb, "lr": config.emb_lr or config.lr}, {"params": rest}] if config.emb_lr else \
        [{"params": dense}]  # one group: the order Adam saw before emb_lr
    opt = _adam(groups, config, lr=config.lr, weight_decay=config.weight_decay)
    opt_lazy = torch.optim.SparseAdam(lazy, lr=config.lr) if lazy else None
    opt_d = _adam(_params(model, DISCRIMINATORS), config, lr=config.lr)
    best, best_state, bad_epochs, history = float("inf"), None, 0, []
    t0, stopped, outside = time.perf_counter(), "max_epochs", 0.0
    bar = tqdm(range(config.max_epochs), desc="training surrogate (paired)", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        order = rng.permutation(train.n)
        sums: dict[str, float] = {}
        for start in range(0, train.n, config.batch_size):
            sel = np.sort(order[start:start + config.batch_size])
            y, types = train.rna[sel], train.types[sel]
            batch = model.sparse_batch(train.atac[sel])
            z_a, z_r = model.encode_atac(batch), model.enc_r(y)
            a2r, r2a = model.f_ar(z_a), model.f_ra(z_r)
            terms = {
                "bce": atac_reconstruction(model, z_a, batch, config, gen, sparse=config.sparse_decoder),
                "mse_r": F.mse_loss(model.dec_r(z_r), y),
                "cross": F.mse_loss(model.dec_r(a2r).clamp_min(0.0), y),
                "cycle": F.mse_loss(model.f_ra(a2r), z_a) + F.mse_loss(model.f_ar(r2a), z_r),
                "adv": _fooled(model.disc_r, a2r, types) + _fooled(model.disc_a, r2a, types),
            }
            loss = (config.atac_weight * terms["bce"] + terms["mse_r"] + terms["cross"]
                    + config.cycle_weight * terms["cycle"] + config.gamma * terms["adv"])
            opt.zero_grad(set_to_none=True)
            if opt_lazy is not None:
                opt_lazy.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if opt_lazy is not None:
                opt_lazy.step()
            d_loss = _disc_loss(model, z_r, a2r, types, types, z_a, r2a, types, types)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(sel)
        val_mse = validation_mse(model, val)
        history.append({"epoch": epoch, "val_mse": val_mse, **{k: v / train.n for k, v in sums.items()}})
        if on_epoch is not None:  # a measurement between epochs: its time is not training time
            t_cb = time.perf_counter()
            on_epoch(model, epoch + 1, t_cb - t0 - outside, val_mse)
            outside += time.perf_counter() - t_cb
        bar.set_postfix(val_mse=f"{val_mse:.4f}", cross=f"{sums['cross'] / train.n:.4f}")
        if val_mse < best - 1e-5:
            best, bad_epochs = val_mse, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if bad_epochs >= config.patience and epoch + 1 >= config.min_epochs:
            stopped = "early_stopping"
            break
        if config.max_seconds and time.perf_counter() - t0 - outside > config.max_seconds:
            stopped = "time_budget"
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"epochs": len(history), "best_val_mse": best, "stopped": stopped, "history": history,
            "seconds_outside_training": outside}


# ---------------------------------------------------------------------------------------------- reference style
def _cycled(rng, n: int, batch_size: int):
    """Endless mini-batches of row indices, reshuffled every pass (the reference's cycled DataLoader)."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield np.sort(order[start:start + batch_size])


def _clipped_step(opt, loss, params) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


class _ReferenceTraining:
    """The reference style's three phases: ATAC autoencoder, RNA autoencoder, then both frozen while the
    cross-maps train on unpaired batches (cycle + cell-type-conditional adversarial losses) on cached latents.
    A wall-time budget (`config.max_seconds`) is shared among the phases in proportion to their steps."""

    def __init__(self, model: Surrogate, train: _Split, val: MultiomeData, config: SurrogateConfig, rng, gen,
                 progress: bool):
        self.model, self.train, self.val, self.config, self.gen = model, train, val, config, gen
        self.n_steps = list(config.reference_steps)
        self.shares = np.asarray(self.n_steps, dtype=float) / sum(self.n_steps)
        self.atac_batches = _cycled(rng, train.n, config.batch_size)
        self.rna_batches = _cycled(np.random.default_rng(rng.integers(2**32)), train.n, config.batch_size)  # unpaired
        self.history: list[dict] = []
        self.done = [0, 0, 0]  # steps run per phase (fewer than planned when a time budget cuts a phase)
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=sum(self.n_steps), desc="training surrogate (reference)", disable=not progress,
                        unit="step")

    def run(self) -> dict:
        model, config = self.model, self.config
        model.train()
        stopped = "max_steps"
        for phase, prefixes, lr, loss in ((0, ATAC_AE, config.lr, self.atac_loss),
                                          (1, RNA_AE, config.cross_lr, self.rna_loss)):
            if not self.autoencoder(phase, prefixes, lr, loss):
                stopped = "time_budget"
        frozen = _params(model, ATAC_AE + RNA_AE)
        for p in frozen:
            p.requires_grad_(False)
        if not self.cross_maps():
            stopped = "time_budget"
        self.bar.close()
        for p in frozen:
            p.requires_grad_(True)
        return {"steps": self.done, "steps_planned": self.n_steps, "best_val_mse": validation_mse(model, self.val),
                "stopped": stopped, "history": self.history}

    def out_of_time(self, phase: int) -> bool:
        elapsed = time.perf_counter() - self.t0
        return bool(self.config.max_seconds) and elapsed > self.config.max_seconds * self.shares[:phase + 1].sum()

    def atac_loss(self):
        batch = self.model.sparse_batch(self.train.atac[next(self.atac_batches)])
        return atac_reconstruction(self.model, self.model.encode_atac(batch), batch, self.config, self.gen)

    def rna_loss(self):
        y = self.train.rna[next(self.rna_batches)]
        return F.mse_loss(self.model.dec_r(self.model.enc_r(y)), y)

    def autoencoder(self, phase: int, prefixes: tuple[str, ...], lr: float, loss_of_next_batch) -> bool:
        """Up to `n_steps[phase]` clipped Adam steps of one autoencoder; False when the time budget ran out."""
        params = _params(self.model, prefixes)
        opt = _adam(params, self.config, lr=lr, betas=ADAM_BETAS)
        for step in range(self.n_steps[phase]):
            loss = loss_of_next_batch()
            _clipped_step(opt, loss, params)
            self.done[phase] += 1
            self.bar.update()
            if step % 50 == 0:
                self.bar.set_postfix(phase=("atac-ae", "rna-ae")[phase], loss=f"{loss.item():.4f}")
            if self.out_of_time(phase):
                return False
        return True

    def cross_maps(self) -> bool:
        """Phase 3 on the frozen autoencoders' latents, encoded once; False when the time budget ran out."""
        model, train, config = self.model, self.train, self.config
        params = _params(model, CROSS_MAPS)
        opt = _adam(params, config, lr=config.cross_lr, betas=ADAM_BETAS)
        opt_d = _adam(_params(model, DISCRIMINATORS), config, lr=config.disc_lr, betas=ADAM_BETAS)
        with torch.no_grad():
            Z_a = torch.cat([model.encode_atac(model.sparse_batch(train.atac[s:s + 512]))
                             for s in range(0, train.n, 512)])
            Z_r = model.enc_r(train.rna)
        for step in range(self.n_steps[2]):
            ia, ir = next(self.atac_batches), next(self.rna_batches)
            z_a, z_r, ta, tr = Z_a[ia], Z_r[ir], train.types[ia], train.types[ir]
            a2r, r2a = model.f_ar(z_a), model.f_ra(z_r)
            a2r2a, r2a2r = model.f_ra(a2r), model.f_ar(r2a)
            cycle = (F.l1_loss(a2r2a, z_a) + F.l1_loss(r2a2r, z_r) / RNA_CYCLE_DIVISOR
                     + atac_reconstruction(model, a2r2a, model.sparse_batch(train.atac[ia]), config, self.gen)
                     + F.mse_loss(model.dec_r(r2a2r), train.rna[ir]) / RNA_CYCLE_DIVISOR)
            adv = _fooled(model.disc_r, a2r, ta) + _fooled(model.disc_a, r2a, tr)
            _clipped_step(opt, config.cycle_weight * cycle + config.gamma * adv, params)
            self.done[2] += 1
            if step % config.disc_every == 0:
                d_loss = _disc_loss(model, z_r, a2r, tr, ta, z_a, r2a, ta, tr)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            self.bar.update()
            if step % 200 == 0 or step == self.n_steps[2] - 1:
                val_mse = validation_mse(model, self.val)
                model.train()
                self.history.append({"step": sum(self.done), "val_mse": val_mse, "cycle": cycle.item(),
                                     "adv": adv.item()})
                self.bar.set_postfix(phase="cross-maps", cycle=f"{cycle.item():.3f}", val_mse=f"{val_mse:.3f}")
            if self.out_of_time(2):
                return False
        return True


def train_surrogate(data: MultiomeData, config: SurrogateConfig = SurrogateConfig(), device: str = "auto",
                    progress: bool = True, on_epoch=None) -> Surrogate:
    """Fit on the train split in `config.style`; returns the model in eval mode with `meta`. `on_epoch(model,
    epochs_done, training_seconds, val_mse)` (paired style) is called after every epoch, its time not counted as
    training (bench/fidelity/fit_curve.py measures fidelity there); it must leave the weights as it found them."""
    dev = resolve_device(device)
    with torch_threads(config.threads):  # reproducible: same seed, same threads → same weights
        torch.manual_seed(config.seed)  # nn.Linear initialisation draws from torch's global RNG: seed it here
        rng = np.random.default_rng(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        model = build_surrogate(data, config).to(dev)
        train, val = _Split(model, data.cells(split="train"), dev), data.cells(split="val")
        with torch.no_grad():  # start the RNA decoders at the mean profile: no gene begins (and stays) below the clamp
            model.dec_r[-1].bias.copy_(train.rna.mean(0))
        t0 = time.perf_counter()
        if config.style == "reference":
            meta = _ReferenceTraining(model, train, val, config, rng, gen, progress).run()
        else:
            meta = _train_paired(model, train, val, config, rng, gen, progress, on_epoch)
    model.eval()
    seconds = time.perf_counter() - t0 - meta.pop("seconds_outside_training", 0.0)
    model.meta = {**meta, "style": config.style, "seconds": seconds, "device": str(dev),
                  "threads": config.threads}
    log.info("surrogate trained (%s): %s, val MSE %.4f, %.1fs", config.style, meta["stopped"], meta["best_val_mse"],
             model.meta["seconds"])
    return model
