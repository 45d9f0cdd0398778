"""The sparse surrogate must equal a plain dense-embedding implementation of the same weights."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from surrogates.model import Surrogate, SurrogateConfig

CHROM = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = Surrogate(CHROM, [f"g{i}" for i in range(4)], ["A", "B"], SurrogateConfig(emb_dim=3, hidden=8, latent=4))
    with torch.no_grad():  # make the open/closed embeddings clearly different and keep outputs positive
        m.emb_open.normal_(0, 1.0)
        m.emb_closed.normal_(0, 1.0)
        m.dec_r[-1].bias.fill_(3.0)
    return m


@pytest.fixture
def X():
    rng = np.random.default_rng(1)
    return sp.csr_matrix((rng.random((6, len(CHROM))) < 0.5).astype(np.uint8))


def dense_reference(m: Surrogate, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's model written naively: W(x) is a dense (cells × peaks × emb) tensor, summed per chromosome."""
    W = x[..., None] * m.emb_open + (1 - x[..., None]) * m.emb_closed  # cells × peaks × emb
    W.retain_grad()
    s = torch.zeros(x.shape[0], m.n_chrom, W.shape[-1]).index_add(1, m.peak_chrom, W)
    y = m.head_from_hidden(m.first(s.flatten(1)))
    return y, W


def test_sparse_forward_matches_dense(model, X):
    x = torch.as_tensor(X.toarray(), dtype=torch.float32)
    y_ref, _ = dense_reference(model, x)
    assert y_ref.abs().sum() > 0  # not a degenerate all-clamped output
    torch.testing.assert_close(model.predict(X), y_ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(x), y_ref, rtol=1e-5, atol=1e-5)


def test_closing_equals_zeroing_the_input(model, X):
    closed = [1, 4, 7]
    x = torch.as_tensor(X.toarray(), dtype=torch.float32)
    x[:, closed] = 0
    y_ref, _ = dense_reference(model, x)
    torch.testing.assert_close(model.predict(X, closed=closed), y_ref.detach(), rtol=1e-5, atol=1e-5)


def test_embedding_gradients_and_gains_match_dense(model, X):
    """∂ℒ/∂W(x) of the dense model equals the per-(cell, chromosome) gradient of the sparse model, and the
    eq. 4 gains G_j·(W(0)_j − W(x)_j) summed over cells equal −Σ ∂ℒ/∂w from the per-sample weights."""
    gene = 2
    x = torch.as_tensor(X.toarray(), dtype=torch.float32)
    y_ref, W = dense_reference(model, x)
    y_ref[:, gene].sum().backward()
    G = W.grad  # cells × peaks × emb
    gain_ref = (G * (model.emb_closed - model.emb_open)[None]).sum(-1) * x  # only open peaks change
    gain_ref = gain_ref.sum(0)

    batch = model.sparse_batch(X)
    s = model.embed(batch)
    s.retain_grad()
    w = torch.ones(batch.idx.numel(), requires_grad=True)
    y = model.head_from_hidden(model.first(model.embed(batch, w)))
    y[:, gene].sum().backward()
    gain = -torch.zeros(model.n_peaks).index_add(0, batch.idx, w.grad)
    torch.testing.assert_close(gain, gain_ref.detach(), rtol=1e-4, atol=1e-5)

    model.zero_grad()
    y2 = model.head_from_hidden(model.first(s))
    y2[:, gene].sum().backward()
    per_chrom = s.grad.view(X.shape[0], model.n_chrom, -1)
    torch.testing.assert_close(per_chrom[:, model.peak_chrom], G, rtol=1e-5, atol=1e-6)


def test_peak_hidden_is_the_rank_one_update(model, X):
    batch = model.sparse_batch(X)
    a = model.first_hidden(batch)
    closed = 5
    a_closed = model.first_hidden(batch, model.closed_weights(batch, [closed]))
    x_col = torch.as_tensor(X[:, [closed]].toarray(), dtype=torch.float32)
    torch.testing.assert_close(a_closed, a - x_col * model.peak_hidden(torch.tensor([closed])), rtol=1e-5,
                               atol=1e-5)


def test_training_checkpoint_and_fidelity(tmp_path):
    from datasets.synthetic import SimulationScale, simulate
    from surrogates.checkpoint import fit_or_load
    from surrogates.fidelity import fidelity_report

    data, _ = simulate(SimulationScale(n_cells=600, n_peaks=800, n_genes=30, n_chrom=3), seed=0)
    cfg = SurrogateConfig(hidden=64, max_epochs=4, min_epochs=1, patience=2)
    m1 = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert not m1.meta["reused"] and m1.meta["epochs"] >= 1
    m2 = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert m2.meta["reused"]
    torch.testing.assert_close(m1.predict(data.atac[:20]), m2.predict(data.atac[:20]))
    rep = fidelity_report(m2, data, ["AQP4", "MOG"])
    assert set(rep.table["gene"]) == {"AQP4", "MOG"} and np.isfinite(rep.marker_r2)


def test_phased_schedule_freezes_autoencoders_after_ae_epochs(monkeypatch):
    """Phased (the reference code): after `ae_epochs` only f_AR, f_RA and the discriminators change."""
    from datasets.synthetic import SimulationScale, simulate
    from surrogates import train as train_mod

    data, _ = simulate(SimulationScale(n_cells=300, n_peaks=400, n_genes=20, n_chrom=2), seed=1)
    snapshot = {}
    freeze = train_mod._freeze_autoencoders

    def spy(model):
        snapshot.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        freeze(model)

    monkeypatch.setattr(train_mod, "_freeze_autoencoders", spy)
    cfg = SurrogateConfig(hidden=16, latent=4, max_epochs=4, ae_epochs=2, min_epochs=2, patience=5, schedule="phased")
    m = train_mod.train_surrogate(data, cfg, device="cpu", progress=False)
    assert snapshot and m.meta["schedule"] == "phased" and m.meta["ae_epochs"] == 2
    final = m.state_dict()
    for name in ("emb_open", "first.weight", "dec_a.0.weight", "enc_r.0.weight", "dec_r.0.weight"):
        torch.testing.assert_close(final[name], snapshot[name])
    assert not torch.equal(final["f_ar.0.weight"], snapshot["f_ar.0.weight"])
    assert all(p.requires_grad for p in m.parameters())  # frozen only while training


def test_schedule_is_validated():
    with pytest.raises(ValueError, match="schedule"):
        SurrogateConfig(schedule="cyclic")
    with pytest.raises(ValueError, match="ae_epochs"):
        SurrogateConfig(max_epochs=5, ae_epochs=5, schedule="phased")
    SurrogateConfig(max_epochs=5, ae_epochs=5)  # joint (default): ae_epochs is not used
