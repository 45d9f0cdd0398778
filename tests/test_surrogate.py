"""The sparse surrogate must equal a plain dense-embedding implementation of the same weights."""

import dataclasses

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


def test_training_checkpoint_and_fidelity(tmp_path, caplog):
    from pathlib import Path

    from datasets.synthetic import SimulationScale, simulate
    from surrogates.checkpoint import checkpoint_key, fit_or_load
    from surrogates.fidelity import fidelity_report

    data, _ = simulate(SimulationScale(n_cells=600, n_peaks=1500, n_genes=30, n_chrom=3), seed=0)
    cfg = SurrogateConfig(hidden=64, max_epochs=4, min_epochs=1, patience=2)
    m1 = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert not m1.meta["reused"] and m1.meta["epochs"] >= 1 and m1.meta["threads"] == cfg.threads
    m2 = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert m2.meta["reused"]
    torch.testing.assert_close(m1.predict(data.atac[:20]), m2.predict(data.atac[:20]))
    rep = fidelity_report(m2, data, ["AQP4", "MOG"])
    assert set(rep.table["gene"]) == {"AQP4", "MOG"}  # R² itself: tests/test_fidelity.py, by hand
    # a truncated checkpoint: one line, moved aside, retrained — to the same weights (same seed, same threads)
    path = Path(m2.meta["checkpoint"])
    path.write_bytes(path.read_bytes()[:2000])
    with caplog.at_level("WARNING", logger="surrogates.checkpoint"):
        m3 = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert not m3.meta["reused"] and len(caplog.records) == 1 and "corrupt surrogate checkpoint" in caplog.text
    assert (path.parent / "corrupt" / path.name).exists() and path.exists()
    for name, value in m1.state_dict().items():
        assert torch.equal(value, m3.state_dict()[name]), name
    # the thread count is part of the key: another count is another surrogate, never a silent reuse
    assert checkpoint_key(data, dataclasses.replace(cfg, threads=1)) != checkpoint_key(data, cfg)


def test_training_does_not_depend_on_the_callers_thread_setting():
    """Training runs on `config.threads` whatever torch was set to before, and restores the caller's setting."""
    from datasets.synthetic import simulate
    from surrogates.train import train_surrogate

    data, _ = simulate("tiny", seed=0)
    cfg = SurrogateConfig(hidden=16, latent=4, max_epochs=2, min_epochs=1, patience=1)
    weights = []
    before = torch.get_num_threads()
    for caller in (1, 3):
        torch.set_num_threads(caller)
        weights.append(train_surrogate(data, cfg, device="cpu", progress=False).state_dict())
        assert torch.get_num_threads() == caller and not torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(before)
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_reference_style_trains_only_the_cross_maps_after_the_autoencoders():
    """Reference style: phases 1–2 fit the autoencoders, phase 3 leaves them frozen and moves only f_AR / f_RA
    (gated affine maps) and the discriminators. Two runs that differ only in phase-3 steps share the autoencoders
    exactly and differ in the cross-maps."""
    from datasets.synthetic import simulate
    from surrogates.model import GatedAffine
    from surrogates.train import train_surrogate

    data, _ = simulate("tiny", seed=1)
    cfg = SurrogateConfig(hidden=16, latent=4, style="reference", reference_steps=(3, 2, 1))
    short = train_surrogate(data, cfg, device="cpu", progress=False).state_dict()
    long_model = train_surrogate(data, dataclasses.replace(cfg, reference_steps=(3, 2, 8)), device="cpu",
                                 progress=False)
    assert isinstance(long_model.f_ar, GatedAffine) and long_model.meta["style"] == "reference"
    long = long_model.state_dict()
    for name in ("emb_open", "first.weight", "dec_a.0.weight", "enc_r.0.weight", "dec_r.0.weight"):
        torch.testing.assert_close(long[name], short[name])
    assert not torch.equal(long["f_ar.weight.0"], short["f_ar.weight.0"])
    assert all(p.requires_grad for p in long_model.parameters())  # frozen only while training


def test_gated_affine_is_a_gate_weighted_affine_chain():
    from surrogates.model import GatedAffine

    torch.manual_seed(0)
    f = GatedAffine(dim=3, n_types=2, layers=1)
    z = torch.randn(5, 3)
    g = torch.softmax(f.gate(z), dim=-1)
    W, b = f.weight[0], f.bias[0]
    expected = torch.stack([(g[i, 0] * W[0] + g[i, 1] * W[1]) @ z[i] + g[i] @ b for i in range(5)])
    torch.testing.assert_close(f(z), expected)


def test_atac_reconstruction_is_the_balanced_focal_bce(X):
    """With every peak drawn, the sampled reconstruction equals ½ mean(open) + ½ mean(closed) of the focal BCE
    over the dense batch, computed here by hand."""
    from surrogates.train import atac_reconstruction

    torch.manual_seed(0)
    m = Surrogate(CHROM, ["g0"], ["A"], SurrogateConfig(emb_dim=3, hidden=8, latent=4, recon_peaks=10_000))
    batch = m.sparse_batch(X)
    z = m.encode_atac(batch)
    loss = atac_reconstruction(m, z, batch, m.config, torch.Generator().manual_seed(0))
    x = torch.as_tensor(X.toarray(), dtype=torch.float32)
    p = torch.sigmoid(m.dec_a(z))
    bce = -(x * torch.log(p) + (1 - x) * torch.log(1 - p))
    p_t = torch.where(x > 0, p, 1 - p)
    focal = (1 - p_t) ** 2 * bce
    expected = 0.5 * focal[x > 0].mean() + 0.5 * focal[x == 0].mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_atac_reconstruction_on_sampled_columns(X):
    """With fewer columns than peaks, the loss is the same balanced focal BCE restricted to the columns drawn from
    the generator (reproduced here from the same seed)."""
    from surrogates.train import atac_reconstruction

    torch.manual_seed(0)
    m = Surrogate(CHROM, ["g0"], ["A"], SurrogateConfig(emb_dim=3, hidden=8, latent=4, recon_peaks=7))
    batch = m.sparse_batch(X)
    z = m.encode_atac(batch)
    loss = atac_reconstruction(m, z, batch, m.config, torch.Generator().manual_seed(5))
    cols = torch.randperm(len(CHROM), generator=torch.Generator().manual_seed(5))[:7]
    x = torch.as_tensor(X.toarray(), dtype=torch.float32)[:, cols]
    p = torch.sigmoid(m.dec_a(z))[:, cols]
    bce = -(x * torch.log(p) + (1 - x) * torch.log(1 - p))
    focal = (1 - torch.where(x > 0, p, 1 - p)) ** 2 * bce
    expected = 0.5 * focal[x > 0].mean() + 0.5 * focal[x == 0].mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_config_is_validated():
    with pytest.raises(ValueError, match="style"):
        SurrogateConfig(style="cyclic")
    with pytest.raises(ValueError, match="reference_steps"):
        SurrogateConfig(reference_steps=(10, 0, 10))


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_restores_the_mode_even_when_the_block_raises(model, training):
    model.train(training)
    with model.evaluating():
        assert not model.training
    assert model.training == training
    with pytest.raises(RuntimeError, match="explainer bug"):
        with model.evaluating():
            raise RuntimeError("explainer bug")
    assert model.training == training


def test_one_gene_lookup_error_for_the_data_the_surrogate_and_the_truth(model):
    from datasets.synthetic import simulate

    data, truth = simulate("tiny", seed=0)
    for owner, lookup in (("the data", data.gene_index), ("the surrogate's outputs", model.gene_index),
                          ("the simulator's planted truth", truth.gene_index)):
        with pytest.raises(KeyError, match=rf"gene 'NOPE' is not in {owner} \(\d+ genes\)"):
            lookup("NOPE")
    with pytest.raises(KeyError, match=r"Similar: \['g0', 'g1', 'g2', 'g3'\]"):
        model.gene_index("g")
    assert model.gene_index("g2") == 2 and data.gene_index(data.gene_names[5]) == 5


def test_the_fused_adam_kernel_is_the_same_update_rounded_differently():
    """`fused_adam` (the paper profile's training kernel) trains to the default kernel's weights up to float
    rounding, and is its own checkpoint."""
    from datasets.synthetic import simulate
    from surrogates.checkpoint import checkpoint_key
    from surrogates.train import train_surrogate

    data, _ = simulate("tiny", seed=0)
    cfg = SurrogateConfig(hidden=16, latent=4, max_epochs=2, min_epochs=2, patience=1)
    plain = train_surrogate(data, cfg, device="cpu", progress=False).state_dict()
    fused_cfg = dataclasses.replace(cfg, fused_adam=True)
    fused = train_surrogate(data, fused_cfg, device="cpu", progress=False).state_dict()
    for name, value in plain.items():
        torch.testing.assert_close(fused[name], value, rtol=1e-3, atol=1e-5, msg=name)
    assert checkpoint_key(data, cfg) != checkpoint_key(data, fused_cfg)


def test_the_embedding_learning_rate_is_its_own_adam_group_and_new_fields_keep_old_keys():
    """`emb_lr` equal to `lr` trains the same weights bit for bit as one group (Adam updates each tensor on its
    own); a larger one moves the embeddings further from their start and nothing else's rule changes. Fields
    added after checkpoints were committed stay out of the key at their defaults."""
    from datasets.synthetic import simulate
    from surrogates.checkpoint import checkpoint_key
    from surrogates.train import train_surrogate

    data, _ = simulate("tiny", seed=0)
    cfg = SurrogateConfig(hidden=16, latent=4, max_epochs=2, min_epochs=2, patience=1, threads=1)
    start = Surrogate(data.chrom_codes()[0], data.gene_names,
                      data.cell_types, cfg).emb_open.detach()
    plain = train_surrogate(data, cfg, device="cpu", progress=False).state_dict()
    same = train_surrogate(data, dataclasses.replace(cfg, emb_lr=cfg.lr), device="cpu", progress=False).state_dict()
    for name, value in plain.items():
        assert torch.equal(same[name], value), name
    fast = train_surrogate(data, dataclasses.replace(cfg, emb_lr=10 * cfg.lr), device="cpu",
                           progress=False).state_dict()
    moved = lambda state: float((state["emb_open"] - start).abs().mean())  # noqa: E731
    assert moved(fast) > 3 * moved(plain)
    assert "emb_lr" not in cfg.to_dict() and "emb_open_init" not in cfg.to_dict()
    assert dataclasses.replace(cfg, emb_lr=0.01).to_dict()["emb_lr"] == 0.01
    assert checkpoint_key(data, dataclasses.replace(cfg, emb_open_init=0.1)) == checkpoint_key(data, cfg)
    assert checkpoint_key(data, dataclasses.replace(cfg, emb_open_init=0.01)) != checkpoint_key(data, cfg)
    small = Surrogate(data.chrom_codes()[0], data.gene_names, data.cell_types,
                      dataclasses.replace(cfg, emb_open_init=0.01))
    assert float(small.emb_open.detach().std()) == pytest.approx(0.01, rel=0.2)


def test_the_sparse_decoder_is_adam_when_every_row_is_drawn_and_touches_only_drawn_rows():
    """`sparse_decoder` (torch's SparseAdam on the ATAC decoder's last layer): with every peak drawn each batch it
    is Adam but for where ε enters the denominator (SparseAdam adds it before the bias correction), so it trains
    nearly the same weights (measured: ≤ 3.5e-3 on that layer, ≤ 2e-4 elsewhere) and the same predictions (≤ 5e-6);
    with a few drawn, a row never drawn keeps its start."""
    from datasets.synthetic import simulate
    from surrogates.train import build_surrogate, train_surrogate

    data, _ = simulate("tiny", seed=0)
    cfg = SurrogateConfig(hidden=16, latent=4, max_epochs=2, min_epochs=2, patience=1, threads=1)
    assert cfg.recon_peaks >= data.n_peaks
    dense = train_surrogate(data, cfg, device="cpu", progress=False)
    lazy = train_surrogate(data, dataclasses.replace(cfg, sparse_decoder=True), device="cpu", progress=False)
    for name, value in dense.state_dict().items():
        torch.testing.assert_close(lazy.state_dict()[name], value, rtol=0, atol=1e-2, msg=name)
    torch.testing.assert_close(lazy.predict(data.atac[:200]), dense.predict(data.atac[:200]), rtol=0, atol=1e-4)
    few = dataclasses.replace(cfg, sparse_decoder=True, recon_peaks=8, max_epochs=1, min_epochs=1)
    torch.manual_seed(few.seed)
    start = build_surrogate(data, few).dec_a[-1].weight.detach().clone()
    trained = train_surrogate(data, few, device="cpu", progress=False).dec_a[-1].weight.detach()
    same = (trained == start).all(1)
    assert 0 < int(same.sum()) < data.n_peaks  # rows never drawn kept their start; drawn ones moved
    assert "sparse_decoder" not in cfg.to_dict()


def test_embedding_tables_and_peak_hidden_match_a_hand_computation(model, X):
    """The tables are Δ_j = W_open,j − W_closed,j and c_k = Σ_{j on chromosome k} W_closed,j, and `embed` with
    them (passed in or computed per call) is s_ck = c_k + Σ_{open j on k} Δ_j, summed here peak by peak in numpy;
    U_j (`peak_hidden`) is the first layer's block of j's chromosome applied to Δ_j."""
    w_open, w_closed = model.emb_open.detach().numpy(), model.emb_closed.detach().numpy()
    x = X.toarray()
    emb = w_open.shape[1]
    want = np.zeros((x.shape[0], model.n_chrom, emb))
    for c in range(x.shape[0]):
        for j, k in enumerate(CHROM):
            want[c, k] += w_open[j] if x[c, j] else w_closed[j]
    delta, const = model.embedding_tables()
    np.testing.assert_allclose(delta.detach().numpy(), w_open - w_closed, rtol=0, atol=1e-6)
    np.testing.assert_allclose(const.detach().numpy(), [w_closed[CHROM == k].sum(0) for k in range(model.n_chrom)],
                               rtol=0, atol=1e-5)
    batch = model.sparse_batch(X)
    with torch.no_grad():
        for got in (model.embed(batch), model.embed(batch, tables=(delta, const))):
            np.testing.assert_allclose(got.numpy(), want.reshape(x.shape[0], -1), rtol=0, atol=1e-5)
        W1 = model.first.weight.numpy().reshape(model.config.hidden, model.n_chrom, emb)
        hand = np.stack([W1[:, CHROM[j], :] @ (w_open[j] - w_closed[j]) for j in (7, 2)])
        np.testing.assert_allclose(model.peak_hidden(torch.tensor([7, 2])).numpy(), hand, rtol=0, atol=1e-5)


def test_keep_freed_memory_is_set_once_and_torch_threads_applies_it():
    from surrogates.model import keep_freed_memory, torch_threads

    first = keep_freed_memory()
    assert isinstance(first, bool) and keep_freed_memory() is first  # cached: mallopt runs once per process
    with torch_threads(1):
        assert torch.get_num_threads() == 1
