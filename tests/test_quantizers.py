"""Tests of speechbrain_sqe.lobes.quantizers.VectorQuantizer."""

import os
import tempfile

import pytest
import torch
import torch.nn.functional as F

from speechbrain_sqe.lobes.masking import relative_lengths_to_mask
from speechbrain_sqe.lobes.quantizers import VectorQuantizer, cosine_similarity


def _initted(vq, codebook):
    """Sets a known codebook and marks it initialised."""
    with torch.no_grad():
        vq.embed.data.copy_(codebook)
        vq.embed_avg.data.copy_(codebook)
        vq.cluster_size.data.fill_(1.0)
        vq.initted.data.fill_(1.0)
    return vq


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_shapes_and_fields(distance):
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=6, codebook_size=10, distance=distance)
    z = torch.randn(3, 7, 6)
    out = vq(z)
    assert out.quantized.shape == (3, 7, 6)
    assert out.indices.shape == (3, 7) and out.indices.dtype == torch.long
    assert out.similarity.shape == (3, 7) and out.distance.shape == (3, 7)
    assert out.commit_loss.dim() == 0 and out.loss.dim() == 0 and out.ce_loss is None
    codes = vq.lookup(out.indices)
    # Forward value of the straight-through output is the code.
    assert torch.allclose(out.quantized, codes, atol=1e-6)
    assert torch.allclose(out.similarity, cosine_similarity(z, codes), atol=1e-6)
    if distance == "cosine":
        assert torch.allclose(vq.codebook.norm(dim=-1), torch.ones(10), atol=1e-5)
        # Nearest code = highest cosine similarity.
        best = (F.normalize(z, dim=-1) @ vq.codebook.t()).argmax(-1)
    else:
        best = torch.cdist(z.reshape(-1, 6), vq.codebook).argmin(-1).reshape(3, 7)
    assert torch.equal(out.indices, best)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_search_in_blocks_picks_the_codes_of_one_score_matrix(distance):
    """More frames than one search block (SEARCH_CHUNK): the same codes as the whole matrix."""
    from speechbrain_sqe.lobes.quantizers import SEARCH_CHUNK

    torch.manual_seed(0)
    vq = _initted(VectorQuantizer(dim=8, codebook_size=64, distance=distance), torch.randn(64, 8))
    vq.eval()
    z = torch.randn(3, SEARCH_CHUNK, 8)  # 3 blocks
    flat = vq._transform(z).reshape(-1, 8)
    whole = vq._scores(flat, vq.codebook).argmax(-1).reshape(3, -1)
    assert torch.equal(vq(z).indices, whole)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_best_score_search_in_blocks_equals_one_score_matrix(distance):
    """The scoring search (one reused block buffer in cosine mode) over several blocks and a partial
    last one: each frame's best score and nearest code as from the whole matrix, bit for bit."""
    from speechbrain_sqe.lobes.quantizers import SEARCH_CHUNK

    torch.manual_seed(1)
    vq = _initted(VectorQuantizer(dim=8, codebook_size=64, distance=distance), torch.randn(64, 8))
    for frames in (2 * SEARCH_CHUNK + 37, 5, 0):
        flat = vq._transform(torch.randn(frames, 8))
        whole = vq._scores(flat, vq.codebook)
        best = vq._best_scores(flat, vq.codebook)
        nearest = vq._nearest_indices(flat, vq.codebook)
        assert best.shape == (frames,) and nearest.shape == (frames,) and nearest.dtype == torch.long
        if frames:
            assert torch.equal(best, whole.amax(-1)) and torch.equal(nearest, whole.argmax(-1))


@pytest.mark.parametrize("reduce", [torch.argmin, torch.argmax])
def test_first_extreme_index_equals_torch_with_ties_and_nan(reduce):
    """The CPU search's argmin/argmax (each row's extreme by amin/amax, then its first column): the
    indices of torch's own reduction of the same products over several blocks, the first of tied
    columns included; a row holding NaN falls back to torch's answer."""
    from speechbrain_sqe.lobes.quantizers import (
        _FIRST_INDEX_OF,
        SEARCH_CHUNK,
        VectorQuantizer,
    )

    torch.manual_seed(5)
    codes = torch.randn(32, 4)
    codes[20] = codes[3]  # two equal codes: a tie in every row
    flat = torch.cat([codes[[3, 20, 7]], torch.randn(SEARCH_CHUNK + 50, 4)])
    flat[SEARCH_CHUNK + 10, 2] = float("nan")
    offset = codes.square().sum(-1)
    found = VectorQuantizer._product_blocks(flat, codes, reduce, torch.long, offset=offset, alpha=-2.0)
    assert reduce in _FIRST_INDEX_OF
    assert torch.equal(found, reduce(torch.addmm(offset, flat, codes.t(), alpha=-2.0), dim=-1))
    vq = VectorQuantizer(dim=4, codebook_size=32, distance="euclidean")
    nearest = vq._nearest_indices(flat, codes)
    assert nearest[:2].tolist() == [3, 3]  # the first of the two equal codes
    assert torch.equal(nearest, vq._scores(flat, codes).argmax(-1))


def test_straight_through_gradients_reach_encoder():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(5, 4)
    vq = VectorQuantizer(dim=4, codebook_size=8)
    x = torch.randn(2, 9, 5)
    out = vq(encoder(x))
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0
    encoder.zero_grad()
    vq(encoder(x)).loss.backward()  # commitment loss also trains the encoder
    assert encoder.weight.grad.abs().sum() > 0
    assert not vq.embed.requires_grad  # EMA codebook: a buffer


def test_kmeans_init_runs_once_and_sets_initted(monkeypatch):
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=3, codebook_size=4, kmeans_init=True)
    assert float(vq.initted) == 0.0 and vq.embed.abs().sum() == 0
    calls = []
    original = vq.init_codebook_kmeans
    monkeypatch.setattr(vq, "init_codebook_kmeans", lambda s: (calls.append(1), original(s)))

    centers = F.normalize(torch.eye(3)[:3] + 0.1, dim=-1)
    z = (centers[torch.randint(0, 3, (2, 30))] + 0.01 * torch.randn(2, 30, 3))
    vq.eval()
    with pytest.warns(UserWarning, match="k-means"):
        vq(z)  # eval: no initialisation
    assert calls == [] and float(vq.initted) == 0.0
    vq.train()
    vq(z)
    vq(z)
    assert calls == [1] and float(vq.initted) == 1.0
    # Every cluster centre has a code close to it.
    sims = centers @ vq.codebook.t()
    assert (sims.max(dim=1).values > 0.99).all()


def test_ema_moves_codes_toward_assigned_vectors_and_not_when_frozen():
    torch.manual_seed(0)
    codebook = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    target = F.normalize(torch.tensor([1.0, 0.4, 0.0]), dim=-1)
    z = target.expand(1, 20, 3) + 0.01 * torch.randn(1, 20, 3)

    for frozen_how in ("flag", "argument", "eval"):
        vq = _initted(VectorQuantizer(dim=3, codebook_size=3, decay=0.5, kmeans_init=False), codebook)
        if frozen_how == "flag":
            vq.freeze_codebook = True
            vq(z)
        elif frozen_how == "argument":
            vq(z, freeze_codebook=True)
        else:
            vq.eval()
            vq(z)
        assert torch.equal(vq.embed, codebook) and torch.equal(vq.cluster_size, torch.ones(3))

    vq = _initted(VectorQuantizer(dim=3, codebook_size=3, decay=0.5, kmeans_init=False), codebook)
    before = float(vq.codebook[0] @ target)
    out = vq(z)
    assert (out.indices == 0).all()
    after = float(vq.codebook[0] @ target)
    assert after > before + 0.02
    assert torch.allclose(vq.embed[1:], codebook[1:], atol=1e-6)  # unassigned codes: direction kept
    assert vq.cluster_size[0] > 1.0 and (vq.cluster_size[1:] < 1.0).all()


def test_euclidean_ema_moves_code_to_the_mean():
    vq = VectorQuantizer(dim=2, codebook_size=2, distance="euclidean", decay=0.0, kmeans_init=False)
    _initted(vq, torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    z = torch.tensor([[[1.0, 1.0], [3.0, 1.0], [9.0, 9.0]]])
    vq(z)
    # decay 0: the code becomes the mean of its vectors (up to the Laplace smoothing).
    assert torch.allclose(vq.embed[0], torch.tensor([2.0, 1.0]), atol=1e-3)
    assert torch.allclose(vq.embed[1], torch.tensor([9.0, 9.0]), atol=1e-3)


def test_dead_code_restart_replaces_dead_codes_with_batch_vectors():
    torch.manual_seed(0)
    codebook = F.normalize(torch.randn(6, 4), dim=-1)
    vq = VectorQuantizer(dim=4, codebook_size=6, kmeans_init=False, threshold_ema_dead_code=0.5)
    _initted(vq, codebook)
    z = codebook[0].expand(1, 16, 4) + 0.05 * torch.randn(1, 16, 4)
    out = vq(z)
    assert (out.indices == 0).all()
    batch = F.normalize(z[0], dim=-1)
    # EMA cluster size of the unused codes after one step: 0.8 * 1 = 0.8 >= 0.5 -> not yet dead.
    assert torch.allclose(vq.embed[1:], codebook[1:], atol=1e-6)
    for _ in range(3):  # 0.8**4 = 0.41 < 0.5 -> restarted
        vq(z)
    restarted = vq.embed[1:]
    dists = torch.cdist(restarted, batch)
    assert (dists.min(dim=1).values < 1e-5).all(), "dead codes must become batch vectors"
    assert torch.allclose(vq.cluster_size[1:], torch.full((5,), 0.5))


def test_dead_code_restart_disabled_by_default():
    torch.manual_seed(0)
    codebook = F.normalize(torch.randn(6, 4), dim=-1)
    vq = _initted(VectorQuantizer(dim=4, codebook_size=6, kmeans_init=False), codebook)
    z = codebook[0].expand(1, 16, 4).clone()
    for _ in range(5):
        vq(z)
    assert torch.allclose(vq.embed[1:], codebook[1:], atol=1e-6)


def test_padded_frames_do_not_affect_updates_or_losses():
    torch.manual_seed(0)
    z = torch.randn(2, 12, 4)
    lengths = torch.tensor([1.0, 0.5])
    z_other = z.clone()
    z_other[1, 6:] = 100 * torch.randn(6, 4)  # different garbage in the padding

    results = []
    for inputs in (z, z_other):
        torch.manual_seed(1)
        vq = VectorQuantizer(dim=4, codebook_size=5, threshold_ema_dead_code=0.5)
        outs = [vq(inputs, lengths) for _ in range(3)]
        results.append((vq.state_dict(), outs[-1]))
    (s1, o1), (s2, o2) = results
    for key in s1:
        assert torch.allclose(s1[key], s2[key]), key
    assert torch.allclose(o1.commit_loss, o2.commit_loss)
    assert torch.equal(o1.similarity, o2.similarity)
    assert (o1.similarity[1, 6:] == 0).all() and (o1.distance[1, 6:] == 0).all()

    # The same as quantizing the valid frames only.
    torch.manual_seed(1)
    vq = VectorQuantizer(dim=4, codebook_size=5, threshold_ema_dead_code=0.5)
    valid = torch.cat([z[0], z[1, :6]]).unsqueeze(0)
    for _ in range(3):
        out = vq(valid)
    assert torch.allclose(vq.embed, s1["embed"], atol=1e-6)
    assert torch.allclose(out.commit_loss, o1.commit_loss, atol=1e-6)


def test_cross_entropy_trains_a_student_towards_given_indices():
    torch.manual_seed(0)
    teacher_codes = F.normalize(torch.randn(8, 4), dim=-1)
    vq = _initted(VectorQuantizer(dim=4, codebook_size=8, kmeans_init=False, ce_temperature=0.1), teacher_codes)
    vq.freeze_codebook = True
    targets = torch.randint(0, 8, (4, 20))
    # Inputs from which the targets can be predicted (class prototypes plus noise).
    x = F.one_hot(targets, 8).float() @ (2 * torch.randn(8, 6)) + 0.2 * torch.randn(4, 20, 6)
    student = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        out = vq(student(x), target_indices=targets)
        optimizer.zero_grad()
        out.ce_loss.backward()
        optimizer.step()
        losses.append(out.ce_loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (vq(student(x)).indices == targets).float().mean() > 0.9
    assert torch.equal(vq.embed, teacher_codes)  # frozen


def test_cross_entropy_logits_and_ignored_frames():
    torch.manual_seed(0)
    z = torch.randn(2, 5, 3)
    vq = VectorQuantizer(dim=3, codebook_size=4, distance="euclidean", kmeans_init=False, ce_temperature=2.0)
    logits = vq.logits(z)
    expected = -torch.cdist(z.reshape(-1, 3), vq.embed).reshape(2, 5, 4) / 2.0
    assert torch.allclose(logits, expected, atol=1e-5)
    vq_sq = VectorQuantizer(dim=3, codebook_size=4, distance="euclidean", kmeans_init=False,
                            euclidean_logits="squared_distance")
    vq_sq.embed.data.copy_(vq.embed)
    assert torch.allclose(vq_sq.logits(z), -torch.cdist(z.reshape(-1, 3), vq.embed).pow(2).reshape(2, 5, 4), atol=1e-4)

    targets = torch.randint(0, 4, (2, 5))
    vq.eval()
    full = vq(z, target_indices=targets).ce_loss
    ref = F.cross_entropy(logits.reshape(-1, 4), targets.reshape(-1))
    assert torch.allclose(full, ref, atol=1e-6)
    masked = vq(z, lengths=torch.tensor([1.0, 0.4]), target_indices=targets).ce_loss
    keep = relative_lengths_to_mask(torch.tensor([1.0, 0.4]), 5)
    ref = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(masked, ref, atol=1e-6)


def test_learned_codebook_gets_gradients():
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=4, codebook_size=6, ema_update=False, kmeans_init=False)
    assert isinstance(vq.embed, torch.nn.Parameter)
    z = torch.randn(2, 10, 4, requires_grad=True)
    out = vq(z)
    assert out.codebook_loss > 0
    out.loss.backward()
    assert vq.embed.grad is not None and vq.embed.grad.abs().sum() > 0
    before = vq.embed.detach().clone()
    vq(z)
    assert torch.equal(vq.embed.detach(), before)  # no EMA overwrite


def test_state_dict_round_trip_keeps_initted():
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=4, codebook_size=8)
    z = torch.randn(2, 20, 4)
    vq(z)
    state = vq.state_dict()
    assert set(state) == {"initted", "cluster_size", "embed_avg", "embed"}
    assert state["embed"].shape == (8, 4) and state["cluster_size"].shape == (8,)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "vq.ckpt")
        torch.save(state, path)
        restored = VectorQuantizer(dim=4, codebook_size=8)
        restored.load_state_dict(torch.load(path, weights_only=True))
    assert float(restored.initted) == 1.0
    restored.eval()
    vq.eval()
    assert torch.equal(restored(z).indices, vq(z).indices)
    restored.train()
    before = restored.embed.clone()
    restored(z, freeze_codebook=True)
    assert torch.equal(restored.embed, before)


def _ddp_worker(rank, world_size, port, folder):
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)  # different data and random state on each rank
    vq = VectorQuantizer(dim=4, codebook_size=8, threshold_ema_dead_code=0.9)
    for _ in range(3):
        vq(torch.randn(2, 10 + 5 * rank, 4))
    torch.save(vq.state_dict(), os.path.join(folder, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_distributed_replicas_stay_identical():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_ddp_worker, args=(2, port, folder), nprocs=2, join=True)
        s0 = torch.load(os.path.join(folder, "rank0.pt"), weights_only=True)
        s1 = torch.load(os.path.join(folder, "rank1.pt"), weights_only=True)
    for key in s0:
        assert torch.equal(s0[key], s1[key]), key
    assert float(s0["initted"]) == 1.0
