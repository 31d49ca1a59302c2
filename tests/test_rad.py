"""RAD: transforms against torchvision, pipelines, labels by construction, seeds, splits, sources."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from sbrnn.datasets import rad, sources, transforms
from sbrnn.datasets.registry import build_task, get_info
from sbrnn.errors import SbrnnError

SMALL = {"n_train": 96, "n_val": 32, "n_test": 32}
#: torchvision.transforms.v2's outputs on fixed inputs, written by tests/reference/torchvision_v2.py.
TORCHVISION = Path(__file__).parent / "reference" / "torchvision_v2.safetensors"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SBRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SBRNN_DATA", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def digits():
    """Clean upsampled digits at side 50, [1797, 50, 50] in [0, 1], and their labels."""
    images, labels = sources.upsampled_digits()
    return transforms.resize(images.float() / 255, 50), labels


def fake_mnist(root, n_train=400, n_test=200, seed=1):
    g = torch.Generator().manual_seed(seed)

    def part(n):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        images[:, :4] = 0  # a black border, as MNIST has
        return images, torch.arange(n) % 10

    train, test = part(n_train), part(n_test)
    sources.write_mnist_idx(root, train, test)
    return train, test


# transforms --------------------------------------------------------------------------------


def test_batched_transforms_match_torchvision(digits):
    ref = load_file(str(TORCHVISION))  # made with the same inputs and parameters as below
    x = digits[0][:6]
    assert torch.equal(x, ref["x"])
    g = torch.Generator().manual_seed(0)
    start = torch.tensor([[0, 0], [49, 0], [49, 49], [0, 49]], dtype=torch.float64)
    end = transforms.perspective_endpoints(6, 50, 50, 0.9, g)
    assert torch.equal(end, ref["end"])
    coefficients, singular = transforms.perspective_coefficients(start, end)
    assert not singular.any()
    assert torch.allclose(transforms.warp_perspective(x, coefficients), ref["perspective"], atol=1e-4)
    sigma = torch.tensor([0.1, 0.4, 0.9, 1.3, 1.7, 2.0])
    assert torch.allclose(transforms.blur(x, sigma), ref["blur"], atol=1e-5)
    assert torch.allclose(transforms.sharpen(x), ref["sharpness"], atol=1e-5)
    assert not torch.allclose(transforms.blur(x, sigma.flip(0)), ref["blur"], atol=1e-2)
    small = torch.rand(4, 28, 28, generator=g)
    expected = F.interpolate(small.unsqueeze(1), size=(50, 50), mode="bilinear", align_corners=False)
    assert torch.allclose(transforms.resize(small, 50), expected.squeeze(1), atol=1e-5)


def test_corners_without_a_homography_are_drawn_again_and_other_draws_are_unchanged():
    start = torch.tensor([[0, 0], [15, 0], [15, 15], [0, 15]], dtype=torch.float64)
    corners = torch.tensor(
        [[[7, 5], [14, 1], [14, 15], [7, 12]], [[3, 2], [12, 1], [14, 13], [1, 14]]], dtype=torch.float64
    )
    _, singular = transforms.perspective_coefficients(start, corners)
    assert singular.tolist() == [True, False]  # the first puts the output's origin on the vanishing line
    x = torch.rand(500, 16, 16, generator=torch.Generator().manual_seed(1))
    warped = transforms.random_perspective(x, 0.9, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same first draw, solved without the redraw
    coefficients, singular = transforms.perspective_coefficients(
        start, transforms.perspective_endpoints(500, 16, 16, 0.9, g)
    )
    assert singular.nonzero().squeeze(1).tolist() == [142]  # one degenerate draw among 500 small images
    kept = ~singular
    torch.testing.assert_close(
        warped[kept], transforms.warp_perspective(x, coefficients)[kept], equal_nan=True
    )
    assert torch.isfinite(warped[142]).any() and not torch.equal(warped[142], x[142])  # warped by a redraw


def test_rad_builds_at_a_seed_that_draws_degenerate_corners(tmp_path, monkeypatch):
    monkeypatch.setenv("SBRNN_CACHE", str(tmp_path))  # built here, not read from a cache
    task = build_task("rad16-n5", seed=1)  # its 3,000 / 500 / 500 sequences draw one such image
    assert task.train.x.shape == (3000, 6, 256)


def test_erasing_boxes_cover_10_to_20_percent():
    g = torch.Generator().manual_seed(0)
    boxes = transforms.erase_boxes(2000, 50, 50, g)
    area = (boxes[:, 2] * boxes[:, 3]).float() / 2500
    assert area.min() > 0.09 and area.max() < 0.215  # 10-20% up to the rounding of the sides
    assert ((boxes[:, 0] + boxes[:, 2]) <= 50).all() and ((boxes[:, 1] + boxes[:, 3]) <= 50).all()
    x = torch.ones(3, 50, 50)
    erased = transforms.erase(x, boxes[:3])
    for i in range(3):
        assert (erased[i] == 0).sum() == boxes[i, 2] * boxes[i, 3]


@pytest.mark.parametrize("index", range(len(transforms.PIPELINES)))
def test_each_pipeline_changes_images_and_respects_their_range(digits, index):
    clean = 0.2 + 0.5 * digits[0][:64]  # range [0.2, 0.7] so that clamping has work to do
    counts = [64 if i == index else 0 for i in range(len(transforms.PIPELINES))]
    out = transforms.transform_grouped(clean.clone(), counts, torch.Generator().manual_seed(index))
    low, high = clean.amin(dim=(1, 2)), clean.amax(dim=(1, 2))
    assert (out.amin(dim=(1, 2)) >= low).all() and (out.amax(dim=(1, 2)) <= high).all()
    changed = (out - clean).abs().amax(dim=(1, 2)) > 1e-3
    if transforms.PIPELINES[index] == "identity":
        assert not changed.any()
    else:  # a blur with sigma near 0.1 or a box on the background may leave a few images alike
        assert changed.float().mean() > 0.8, transforms.PIPELINES[index]


def test_same_generator_seed_gives_identical_transforms(digits):
    counts = [4] * len(transforms.PIPELINES)
    runs = [
        transforms.transform_grouped(digits[0][:32].clone(), counts, torch.Generator().manual_seed(s))
        for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


# sequences ---------------------------------------------------------------------------------


def clean_uint8(ids, side):
    """The untransformed images ``ids`` of the digits source, as the generator stores them."""
    images, _ = sources.upsampled_digits()
    x = transforms.resize(images[ids.reshape(-1)].float() / 255, side)
    return x.mul(255).round().to(torch.uint8).view(*ids.shape, side * side)


def test_default_layout_and_normalisation():
    task = build_task("rad", seed=0, **SMALL)
    assert (task.n_x, task.n_y, task.steps, task.loss) == (2500, 10, 11, "cross_entropy")
    assert task.train.x.shape == (96, 11, 2500) and task.train.x.dtype == torch.float16
    assert (task.train.x[:, -1] == 0).all()  # the blank query step
    data = rad.generate(rad.RadSpec(**task.meta["generation"]))[0]["train"]
    expected = (data["images"].float() / 255 - rad.MEAN) / rad.STD
    assert torch.allclose(task.train.x[:, :10].float(), expected, atol=2e-3)
    assert set(task.train.y.tolist()) <= set(range(10)) and len(set(task.train.y.tolist())) > 5


def test_labels_match_the_anomaly_position_by_construction():
    spec = rad.RadSpec(side=28, n_train=600, n_val=20, n_test=20, seed=5)
    data = rad.generate(spec)[0]["train"]
    _, labels = sources.upsampled_digits()
    ids, label = data["source_id"], data["label"]
    # every image of a sequence is a different source image of the sequence's digit
    assert (labels[ids] == data["digit"].long().view(-1, 1)).all()
    assert all(len(set(row)) == spec.n for row in ids.tolist())
    assert (data["pipe_a"] != data["pipe_b"]).all()
    clean = clean_uint8(ids, 28).int()
    diff = (data["images"].int() - clean).abs().amax(dim=2)  # [N, n] max pixel change per step
    identity = transforms.PIPELINES.index("identity")
    steps = torch.arange(spec.n).view(1, -1)
    normal_identity = data["pipe_a"] == identity
    assert normal_identity.sum() > 30
    # A = identity: every step but the labelled one is the clean image; the labelled one is not
    rest = diff[normal_identity][steps.expand(int(normal_identity.sum()), -1) != label[normal_identity, None]]
    assert (rest <= 1).all()
    at_label = diff[normal_identity, label[normal_identity]]
    assert (at_label > 1).float().mean() > 0.85
    # B = identity: only the labelled step is clean
    anomaly_identity = data["pipe_b"] == identity
    assert anomaly_identity.sum() > 30
    assert (diff[anomaly_identity, label[anomaly_identity]] <= 1).all()


def test_no_anomaly_class_and_n():
    task = build_task("rad28", seed=1, n=9, no_anomaly_prob=0.5, n_train=200, n_val=20, n_test=20)
    assert (task.n_x, task.n_y, task.steps) == (784, 10, 10)
    data = rad.generate(rad.RadSpec(**task.meta["generation"]))[0]["train"]
    assert torch.equal(data["label"] == 9, ~data["anomaly"])
    assert 60 < int((~data["anomaly"]).sum()) < 140
    none_identity = (~data["anomaly"]) & (data["pipe_a"] == transforms.PIPELINES.index("identity"))
    ids = data["source_id"][none_identity]
    assert (data["images"][none_identity].int() - clean_uint8(ids, 28).int()).abs().max() <= 1
    no_query = build_task("rad28", seed=1, query_step=False, n=5, **SMALL)
    assert (no_query.steps, no_query.n_y) == (5, 5)


def test_same_seed_identical_bytes_different_seed_different(tmp_path, monkeypatch):
    spec = rad.RadSpec(side=28, n_train=40, n_val=16, n_test=16, seed=3)
    monkeypatch.setenv("SBRNN_CACHE", str(tmp_path / "a"))
    first, entry_a = rad.generate(spec)
    monkeypatch.setenv("SBRNN_CACHE", str(tmp_path / "b"))
    second, entry_b = rad.generate(spec)
    assert not entry_a.hit and not entry_b.hit
    assert entry_a.path.read_bytes() == entry_b.path.read_bytes()
    for split in sources.SPLITS:
        for key, value in first[split].items():
            assert torch.equal(value, second[split][key])
    other = rad.generate(rad.RadSpec(side=28, n_train=40, n_val=16, n_test=16, seed=4))[0]
    assert not torch.equal(other["train"]["images"], first["train"]["images"])


def test_worker_count_does_not_change_the_bytes():
    pool = sources.load_pools("digits", seed=0)["train"]
    spec = rad.RadSpec(side=16, n_train=rad.CHUNK + 40, seed=9)  # two chunks
    one = rad.generate_split(pool, "train", spec, workers=1)
    two = rad.generate_split(pool, "train", spec, workers=2)
    assert all(torch.equal(one[k], two[k]) for k in one) and one["images"].shape == (rad.CHUNK + 40, 10, 256)


def test_splits_draw_from_disjoint_source_images():
    pools = sources.load_pools("digits", seed=2)
    ids = [set(pools[s].ids.tolist()) for s in sources.SPLITS]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 1797
    data = rad.generate(rad.RadSpec(side=28, n_train=300, n_val=100, n_test=100, seed=2))[0]
    used = [set(data[s]["source_id"].reshape(-1).tolist()) for s in sources.SPLITS]
    assert not (used[0] & used[1] or used[0] & used[2] or used[1] & used[2])
    assert all(u <= i for u, i in zip(used, ids))


# sources -----------------------------------------------------------------------------------


def test_digits_source_is_mnist_like():
    images, labels = sources.upsampled_digits()
    assert images.shape == (1797, 28, 28) and images.dtype == torch.uint8
    assert (images[:, :4] == 0).all() and (images[:, :, -4:] == 0).all()  # 20x20 box, 4-pixel margin
    assert int(images.max()) == 255 and torch.bincount(labels).min() >= 170
    assert get_info("rad").offline() and get_info("rad").source == "digits"


def test_mnist_from_idx_files(tmp_path):
    root = tmp_path / "mnist-root"
    assert not get_info("rad-mnist").offline()
    train, test = fake_mnist(root)
    assert sources.mnist_available(root)
    pools = sources.load_pools("mnist", seed=0, data_root=root)
    assert torch.equal(pools["train"].images, train[0]) and torch.equal(pools["train"].labels, train[1])
    assert len(pools["val"]) == len(pools["test"]) == 100
    assert not set(pools["val"].ids.tolist()) & set(pools["test"].ids.tolist())
    assert min(pools["val"].ids.tolist() + pools["test"].ids.tolist()) >= 400
    task = build_task("rad-mnist", seed=0, data_root=str(root), side=28, n_train=64, n_val=16, n_test=16)
    assert (task.n_x, task.n_y, task.steps) == (784, 10, 11)
    data = rad.generate(rad.RadSpec(**task.meta["generation"]), data_root=root)[0]
    everything = torch.cat([train[0], test[0]])
    for split in sources.SPLITS:  # identity-normal steps reproduce the IDX pixels exactly
        d = data[split]
        rows = (d["pipe_a"] == 0).nonzero().squeeze(1)
        for r in rows.tolist():
            for t in range(10):
                if t != int(d["label"][r]):
                    assert torch.equal(d["images"][r, t], everything[d["source_id"][r, t]].view(-1))


def test_mnist_missing_is_one_line_naming_the_files(tmp_path):
    with pytest.raises(SbrnnError) as info:
        build_task("rad-mnist", data_root=str(tmp_path / "nowhere"), **SMALL)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    for name in sources.MNIST_FILES:
        assert name in message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"side": 8}, "side 8"),
        ({"side": 50.5}, "side 50.5"),
        ({"n": 1}, "n 1"),
        ({"n": 40}, "n <= "),
        ({"no_anomaly_prob": 1.0}, "no_anomaly_prob 1.0"),
        ({"n_train": 0}, "n_train 0"),
        ({"n_val": -3}, "n_val -3"),
        ({"query_step": "yes"}, "query_step 'yes'"),
        ({"colour": 1}, "unknown option 'colour'"),
    ],
)
def test_bad_options_are_one_line_errors(options, fragment):
    with pytest.raises(SbrnnError) as info:
        build_task("rad28", **{**SMALL, **options})
    assert fragment in str(info.value) and "allowed" in str(info.value)


def test_seq_digits():
    task = build_task("seq-digits", seed=0)
    assert (task.n_x, task.n_y, task.steps, task.loss) == (8, 10, 8, "cross_entropy")
    assert (len(task.train), len(task.val), len(task.test)) == (1258, 270, 269)
    assert abs(float(task.train.x.mean())) < 1e-4 and abs(float(task.train.x.std()) - 1) < 1e-3
    again = build_task("seq-digits", seed=0)
    assert torch.equal(task.train.x, again.train.x)
    assert not torch.equal(task.train.y, build_task("seq-digits", seed=1).train.y)


def test_mnist_download_takes_the_first_mirror_with_the_right_checksum(tmp_path):
    import gzip
    import hashlib

    made = tmp_path / "made"
    train, test = fake_mnist(made, n_train=30, n_test=20)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    md5 = {}
    for name in sources.MNIST_FILES:
        blob = gzip.compress((made / "MNIST" / "raw" / name).read_bytes())
        (good / f"{name}.gz").write_bytes(blob)
        (bad / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(4)))  # a valid, wrong file
        md5[name] = hashlib.md5(blob).hexdigest()
    missing = (tmp_path / "nowhere").as_uri() + "/"
    mirrors = (missing, bad.as_uri() + "/", good.as_uri() + "/")
    root = tmp_path / "root"
    raw = sources.download_mnist(root, mirrors, md5)
    assert sorted(p.name for p in raw.iterdir()) == sorted(sources.MNIST_FILES)  # no .part left behind
    images, labels, test_images, test_labels = sources.mnist(root)
    assert torch.equal(images, train[0]) and torch.equal(labels, train[1]) and labels.dtype == torch.int64
    assert torch.equal(test_images, test[0]) and torch.equal(test_labels, test[1])
    with pytest.raises(SbrnnError) as info:
        sources.download_mnist(tmp_path / "other", mirrors[:2], md5)
    message = str(info.value)
    assert "\n" not in message and "nowhere/train-images-idx3-ubyte.gz" in message
    assert f"expected {md5['train-images-idx3-ubyte']}" in message


def test_idx_files_with_a_wrong_magic_or_length_are_refused(tmp_path):
    fake_mnist(tmp_path, n_train=10, n_test=10)
    raw = tmp_path / "MNIST" / "raw"
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(SbrnnError, match=r"holds 9 bytes after its header; its dims \[10\] need 10"):
        sources.mnist(tmp_path)
    labels.write_bytes(b"\x00\x00\x0d\x01" + (10).to_bytes(4, "big") + bytes(40))  # float32 labels
    with pytest.raises(SbrnnError, match="magic 00000d01, allowed: 000008NN"):
        sources.mnist(tmp_path)
    labels.write_bytes(b"\x00\x00\x08\x01" + (9).to_bytes(4, "big") + bytes(9))  # 9 labels, 10 images
    with pytest.raises(SbrnnError, match=r"t10k files .* disagree: images \[10, 28, 28\], labels \[9\]"):
        sources.mnist(tmp_path)
