"""The compiled kernels as torch ops: opcheck, the argument checks at their boundary, torch.compile."""

import pytest
import torch

from sbrnn.child import kernels, sparse_ops
from sbrnn.child.recurrence import block_recurrence, sparse_block_recurrence, sparse_recurrence_forward
from sbrnn.child.sparse_ops import SparsePattern

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(kernels.library() is None, reason=str(kernels.library_error())),
]


def pattern_of(rows: int, cols: int, seed: int = 0) -> SparsePattern:
    """A random pattern with a row that keeps every column (the kernels pair such rows) and an empty one."""
    mask = (torch.rand(rows, cols, generator=torch.Generator().manual_seed(seed)) < 0.3).float()
    mask[0] = 1.0
    mask[-1] = 0.0
    return SparsePattern.from_mask(mask)


def randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def spmm_args(n: int = 37, rows: int = 11, cols: int = 7) -> tuple[torch.Tensor, ...]:
    pattern = pattern_of(rows, cols)
    return pattern.indptr, pattern.cols, randn(pattern.nnz), randn(rows, seed=2), randn(n, cols, seed=3)


def sddmm_args(n: int = 37, rows: int = 11, cols: int = 7) -> tuple[torch.Tensor, ...]:
    pattern = pattern_of(rows, cols)
    x_tiles = kernels.tiles(randn(n, cols, seed=2))
    return pattern.colptr, pattern.rows, pattern.colpos, randn(n, rows), x_tiles


def recurrence_args(maps: int = 2, batch: int = 5, steps: int = 3, size: int = 27) -> tuple:
    return randn(maps, batch, steps, size), randn(maps, size, size, seed=2) / size**0.5


@pytest.mark.parametrize("n,cols", [(37, 7), (5, 1), (64, 3), (0, 4)])
def test_opcheck_tiles(n, cols):
    x = randn(n, cols)
    torch.library.opcheck(torch.ops.sbrnn.tiles.default, (x,))
    torch.library.opcheck(torch.ops.sbrnn.tiles.default, (randn(n, cols + 3)[:, 1 : cols + 1],))  # row stride


@pytest.mark.parametrize("n,rows,cols", [(37, 11, 7), (5, 3, 1), (64, 9, 40)])
def test_opcheck_spmm_and_sddmm(n, rows, cols):
    torch.library.opcheck(torch.ops.sbrnn.spmm.default, spmm_args(n, rows, cols))
    torch.library.opcheck(torch.ops.sbrnn.sddmm.default, sddmm_args(n, rows, cols))


@pytest.mark.parametrize(
    "activation,maps,batch,steps,size,h",
    [
        ("relu", 2, 5, 3, 27, 25),
        ("tanh", 1, 1, 1, 7, 4),
        ("relu", 1, 6, 4, 49, 49),
    ],
)
def test_opcheck_recurrence(activation, maps, batch, steps, size, h):
    projected, weight = recurrence_args(maps, batch, steps, size)
    torch.library.opcheck(torch.ops.sbrnn.recurrence_forward.default, (projected, weight, h, activation))
    states = kernels.recurrence_forward(projected, weight, h, activation)
    grad_y = randn(maps, batch, steps, size - h, seed=4)
    backward = torch.ops.sbrnn.recurrence_backward.default
    torch.library.opcheck(backward, (states, grad_y, weight, h, activation))


def sparse_recurrence_args(
    batch: int = 37, steps: int = 4, size: int = 45, h: int = 40, activation: str = "relu"
) -> tuple[tuple, tuple]:
    """The forward's and the backward's arguments of the sparse recurrence's ops."""
    mask = (torch.rand(size, size, generator=torch.Generator().manual_seed(5)) < 0.2).float()
    weight = 0.3 * randn(size, size) * mask
    pattern, pattern_t = SparsePattern.from_mask(mask), SparsePattern.from_mask(mask.t())
    values, values_t = weight.reshape(-1)[pattern.flat], weight.t().reshape(-1)[pattern_t.flat]
    forward = (randn(batch, steps, size, seed=2), pattern.indptr, pattern.cols, values, h, activation)
    states = sparse_recurrence_forward(*forward)
    grad_y = randn(batch, steps, size - h, seed=3)
    return forward, (states, grad_y, pattern_t.indptr, pattern_t.cols, values_t, h, activation)


@pytest.mark.parametrize("batch,steps,size,h,activation", [(37, 4, 45, 40, "relu"), (1, 1, 7, 3, "tanh")])
def test_opcheck_sparse_recurrence(batch, steps, size, h, activation):
    forward, backward = sparse_recurrence_args(batch, steps, size, h, activation)
    torch.library.opcheck(torch.ops.sbrnn.sparse_recurrence_forward.default, forward)
    torch.library.opcheck(torch.ops.sbrnn.sparse_recurrence_backward.default, backward)


def test_the_ops_compute_what_their_docstrings_say():
    x = randn(37, 7)
    x_tiles = kernels.tiles(x)
    tile = kernels.library().tile
    assert x_tiles.shape == (2, 7, tile)
    padded = torch.cat((x, x.new_zeros(2 * tile - 37, 7)))
    assert torch.equal(x_tiles, padded.reshape(2, tile, 7).transpose(1, 2))

    indptr, cols, values, bias, _ = spmm_args()
    pattern = pattern_of(11, 7)
    weight = torch.zeros(11 * 7).index_put_((pattern.flat,), values).reshape(11, 7)
    out, tiles_on_the_way = kernels.spmm(indptr, cols, values, bias, x)
    torch.testing.assert_close(out, x @ weight.t() + bias)
    assert torch.equal(tiles_on_the_way, x_tiles)

    g = randn(37, 11, seed=5)
    grad = kernels.sddmm(pattern.colptr, pattern.rows, pattern.colpos, g, x_tiles)
    torch.testing.assert_close(grad, (g.t() @ x).reshape(-1)[pattern.flat])  # kept entries, CSR order


@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 32, 48, 49])
def test_a_last_tile_of_any_height_is_exact(n):
    """A batch's last tile holds 1 to 32 rows; one of at most 16 is read by half, in both kernels."""
    pattern = pattern_of(40, 70)  # a row keeping every column (the odd one out), 8 and 4 per column
    values, bias, x = randn(pattern.nnz), randn(40, seed=2), randn(n, 70, seed=3)
    weight = torch.zeros(40 * 70).index_put_((pattern.flat,), values).reshape(40, 70)
    out, x_tiles = kernels.spmm(pattern.indptr, pattern.cols, values, bias, x)
    torch.testing.assert_close(
        out.double(), x.double() @ weight.double().t() + bias.double(), rtol=1e-5, atol=1e-5
    )
    g = randn(n, 40, seed=5)
    grad = kernels.sddmm(pattern.colptr, pattern.rows, pattern.colpos, g, x_tiles)
    torch.testing.assert_close(
        grad.double(), (g.double().t() @ x.double()).reshape(-1)[pattern.flat], rtol=1e-5, atol=1e-5
    )


def test_the_layout_constants_come_from_the_library():
    lib = kernels.library()
    assert lib.tile == lib.dll.sbrnn_tile() and lib.block_columns == lib.dll.sbrnn_block_columns()
    assert kernels.tiles(randn(lib.tile + 1, 3)).shape == (2, 3, lib.tile)


def backward_args() -> tuple:
    projected, weight = recurrence_args()
    return kernels.recurrence_forward(projected, weight, 25, "relu"), randn(2, 5, 3, 2), weight, 25, "relu"


VALID = {  # op -> its valid arguments, which each case below changes in one place
    "tiles": lambda: (randn(37, 7),),
    "spmm": spmm_args,
    "sddmm": sddmm_args,
    "recurrence_forward": lambda: (*recurrence_args(), 25, "relu"),
    "recurrence_backward": backward_args,
    "sparse_recurrence_forward": lambda: sparse_recurrence_args()[0],
    "sparse_recurrence_backward": lambda: sparse_recurrence_args()[1],
}


@pytest.mark.parametrize(
    "op,index,change,message",
    [
        ("tiles", 0, lambda x: x.double(), r"x must be torch.float32, got torch.float64"),
        ("tiles", 0, lambda x: x.t(), r"x must have unit column stride, got strides \(1, 7\)"),
        ("tiles", 0, lambda x: x[0], r"x must be 2-D, got shape \(7,\)"),
        ("spmm", 1, lambda cols: cols.long(), r"cols must be torch.int32, got torch.int64"),
        ("spmm", 0, lambda indptr: indptr.int(), r"indptr must be torch.int64, got torch.int32"),
        ("spmm", 2, lambda values: values.double(), r"values must be torch.float32, got torch.float64"),
        ("spmm", 2, lambda values: torch.stack((values, values), 1)[:, 0], r"values must be contiguous"),
        ("spmm", 2, lambda values: values[1:], r"values must have shape \(\d+,\) \(nnz, as cols\)"),
        ("spmm", 3, lambda bias: bias[:10], r"bias must have shape \(11,\) .*, got \(10,\)"),
        ("spmm", 4, lambda x: x[:, :6], r"cols must lie in \[0, 5\], got entries in \[0, 6\]"),
        ("spmm", 0, lambda indptr: indptr - 1, r"indptr must lie in \[0, \d+\], got entries in \[-1, "),
        (
            "spmm",
            0,
            lambda indptr: indptr.clamp_max(int(indptr[-1]) - 1),
            r"indptr must end at nnz = \d+ \(the entries given\), got",
        ),
        ("sddmm", 1, lambda rows: rows.long(), r"rows must be torch.int32, got torch.int64"),
        (
            "sddmm",
            4,
            lambda x_tiles: x_tiles[:1],
            r"x_tiles must have shape \(2, 7, 32\) .*, got \(1, 7, 32\)",
        ),
        (
            "sddmm",
            3,
            lambda g: torch.cat((g, g)),
            r"x_tiles must have shape \(3, 7, 32\) \(tiles of N rows as g",
        ),
        ("sddmm", 3, lambda g: g[:32], r"x_tiles must have shape \(1, 7, 32\) .*, got \(2, 7, 32\)"),
        (
            "sddmm",
            3,
            lambda g: g.t().contiguous().t(),
            r"g must have unit column stride, got strides \(1, 37\)",
        ),
        ("sddmm", 3, lambda g: g.double(), r"g must be torch.float32, got torch.float64"),
        ("sddmm", 0, lambda colptr: colptr[:-1], r"colptr must have shape \(8,\) \(C \+ 1"),
        ("sddmm", 2, lambda dst: dst + dst.numel(), r"dst must lie in \[0, \d+\], got entries in"),
        ("sddmm", 3, lambda g: g[:, :5], r"rows must lie in \[0, 4\], got entries in"),
        ("recurrence_forward", 0, lambda p: p.transpose(1, 2), r"projected must be contiguous"),
        ("recurrence_forward", 0, lambda p: p[0], r"projected must be 4-D, got shape \(5, 3, 27\)"),
        ("recurrence_forward", 1, lambda w: w[:1], r"weight_s must have shape \(2, 27, 27\)"),
        ("recurrence_forward", 1, lambda w: w.half(), r"weight_s must be torch.float32, got torch.float16"),
        ("recurrence_forward", 2, lambda h: 28, r"h must lie in \[0, R = 27\], got 28"),
        ("recurrence_forward", 3, lambda act: "gelu", r"activation must be one of relu, tanh, got 'gelu'"),
        (
            "recurrence_backward",
            1,
            lambda gy: gy[..., :1].contiguous(),
            r"grad_y must have shape \(2, 5, 3, 2\) \(K, B, T, R - h of states\), got \(2, 5, 3, 1\)",
        ),
        ("recurrence_backward", 0, lambda states: states[:0], r"states must hold T \+ 1 >= 1 steps"),
        (
            "recurrence_backward",
            2,
            lambda w: w[:, :26, :26],
            r"weight_s must have shape \(2, 27, 27\) \(K, R, R of states\), got \(2, 26, 26\)",
        ),
        (
            "sparse_recurrence_forward",
            0,
            lambda p: p[..., :44].contiguous(),
            r"indptr must have shape \(45,\) \(R \+ 1, R of the states\), got \(46,\)",
        ),
        (
            "sparse_recurrence_forward",
            0,
            lambda p: p[None],
            r"projected must be 3-D, got shape \(1, 37, 4, 45\)",
        ),
        (
            "sparse_recurrence_forward",
            2,
            lambda cols: cols + 1,
            r"cols must lie in \[0, 44\], got entries in",
        ),
        ("sparse_recurrence_forward", 3, lambda values: values[:-1], r"values must have shape"),
        ("sparse_recurrence_forward", 4, lambda h: -1, r"h must lie in \[0, R = 45\], got -1"),
        (
            "sparse_recurrence_backward",
            1,
            lambda gy: gy[:, 1:].contiguous(),
            r"grad_y must have shape \(37, 4, 5\) \(B, T, R - h of states\), got \(37, 3, 5\)",
        ),
        ("sparse_recurrence_backward", 2, lambda indptr: indptr.int(), r"indptr_t must be torch.int64"),
        ("sparse_recurrence_backward", 0, lambda states: states.double(), r"states must be torch.float32"),
    ],
)
def test_wrong_arguments_raise_a_value_error_naming_them(op, index, change, message):
    args = list(VALID[op]())
    args[index] = change(args[index])
    with pytest.raises(ValueError, match=rf"^sbrnn::{op}: {message}"):
        getattr(torch.ops.sbrnn, op)(*args)


def test_a_sparse_product_checks_each_input_and_index_tensors_again_after_in_place_changes():
    indptr, cols, values, bias, x = spmm_args()
    product = kernels.SparseProduct("test", indptr, cols, values, bias, 37, 7)
    out = x.new_empty(37, 11)
    product(x, out)
    torch.testing.assert_close(out, kernels.spmm(indptr, cols, values, bias, x)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^test: x must have shape \(37, 7\) \(B, C of the product\), got"):
        product(x[:36], out)
    with pytest.raises(ValueError, match=r"^test: out must be contiguous"):
        product(x, out.t().contiguous().t())
    cols[3] = 7  # the range scan passed for this tensor at its last version: a new one runs
    with pytest.raises(ValueError, match=r"^sbrnn::spmm: cols must lie in \[0, 6\], got entries in \[0, 7\]"):
        kernels.spmm(indptr, cols, values, bias, x)


def test_the_fake_implementations_check_the_same():
    from torch._subclasses.fake_tensor import FakeTensorMode

    args = spmm_args()
    with FakeTensorMode() as mode:
        indptr, cols, values, bias, x = (mode.from_tensor(t) for t in args)
        out, x_tiles = torch.ops.sbrnn.spmm(indptr, cols, values, bias, x)
        assert out.shape == (37, 11) and x_tiles.shape == (2, 7, kernels.library().tile)
        with pytest.raises(ValueError, match=r"^sbrnn::spmm: bias must have shape \(11,\)"):
            torch.ops.sbrnn.spmm(indptr, cols, values, bias[:10], x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to pass one")
def test_tensors_on_another_device_raise():
    with pytest.raises(ValueError, match=r"^sbrnn::spmm: x must be on the CPU, got cuda:0"):
        indptr, cols, values, bias, x = spmm_args()
        torch.ops.sbrnn.spmm(indptr, cols, values, bias, x.cuda())


def test_the_python_callers_check_the_pattern_against_their_inputs():
    pattern = pattern_of(11, 7)
    with pytest.raises(ValueError, match=r"x must have 7 columns for the pattern of a 11 x 7 map, got shape"):
        sparse_ops.sparse_x_product(randn(4, 3, 8), torch.zeros(pattern.nnz), pattern)
    x_tiles = sparse_ops.tiles(randn(37, 7))
    with pytest.raises(ValueError, match=r"grad_out must have n = 36 rows \(those of x\), got 37"):
        sparse_ops.kept_gradient(randn(37, 11), x_tiles, 36, pattern)


def test_without_the_kernels_the_ops_raise_kernels_unavailable(monkeypatch):
    monkeypatch.setattr(kernels, "library", lambda: None)
    with pytest.raises(kernels.KernelsUnavailable, match=r"^sbrnn::tiles needs the compiled kernels"):
        kernels.tiles(randn(3, 2))


def _eager_and_compiled(fn, *inputs: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """``fn``'s output and its inputs' gradients, eager and compiled (one graph, no breaks)."""
    results = []
    for run in (fn, torch.compile(fn, fullgraph=True, backend="aot_eager")):
        leaves = [t.detach().requires_grad_(t.requires_grad) for t in inputs]
        out = run(*leaves)
        out.backward(randn(*out.shape, seed=9))
        results.append((out.detach(), *(t.grad for t in leaves if t.requires_grad)))
    return results


def test_torch_compile_traces_the_sparse_product_in_one_graph():
    """``aot_eager``: Dynamo and AOT autograd trace the ops through their fake implementations
    (what ``inductor`` also needs; it then compiles C++ of its own, minutes on a busy machine:
    see the slow test below)."""
    torch._dynamo.reset()
    pattern = pattern_of(11, 37)
    weight = (randn(pattern.nnz) * 0.5).requires_grad_()  # the map's kept entries
    bias = randn(11, seed=2).requires_grad_()

    def step(x, weight, bias):
        return sparse_ops.sparse_x_product(x, weight, pattern, bias).relu()

    eager, compiled = _eager_and_compiled(step, randn(5, 3, 37, seed=3), weight, bias)
    for a, b in zip(eager, compiled, strict=True):
        assert torch.equal(a, b)


def test_torch_compile_traces_both_recurrences_in_one_graph():
    torch._dynamo.reset()
    projected = randn(37, 4, 45).requires_grad_()
    weight = (randn(45, 45, seed=2) * 0.2).requires_grad_()
    mask = (torch.rand(45, 45, generator=torch.Generator().manual_seed(3)) < 0.2).float()
    patterns = SparsePattern.from_mask(mask), SparsePattern.from_mask(mask.t())

    def compiled_loops(p, w):
        return block_recurrence(p, w, 40, "tanh")[0]

    def sparse(p, w):
        return sparse_block_recurrence(p, w, *patterns, 40, "relu")[0]

    for fn in (compiled_loops, sparse):
        eager, compiled = _eager_and_compiled(fn, projected, weight)
        for a, b in zip(eager, compiled, strict=True):
            assert torch.equal(a, b)


@pytest.mark.slow
def test_inductor_compiles_a_training_step_of_the_sparse_product():
    """Slow: inductor builds its own C++ for the torch ops around ours (20-40 s here, cold)."""
    torch._dynamo.reset()
    pattern = pattern_of(11, 37)
    weight = (randn(pattern.nnz) * 0.5).requires_grad_()  # the map's kept entries

    def step(x, weight):
        return sparse_ops.sparse_x_product(x, weight, pattern).relu()

    eager, compiled = [], []
    for run, results in ((step, eager), (torch.compile(step, fullgraph=True), compiled)):
        w = weight.detach().requires_grad_()
        out = run(randn(5, 3, 37, seed=3), w)
        out.sum().backward()
        results.extend((out.detach(), w.grad))
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b)


def test_eager_calls_run_the_body_and_fake_tensors_get_the_registered_op():
    """:class:`kernels.KernelOp`: eager calls give the op's results; a traced (fake) tensor is routed
    to the registered op and its fake implementation (the body would read its memory)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    x = randn(37, 5)
    torch.testing.assert_close(kernels.tiles(x), kernels.tiles.op(x), rtol=0, atol=0)
    assert torch.ops.sbrnn.tiles.default is not None and kernels.tiles.op._qualname == "sbrnn::tiles"
    with FakeTensorMode() as mode:
        out = kernels.tiles(mode.from_tensor(x))
    assert tuple(out.shape) == (2, 5, kernels.library().tile)
