"""ONNX Runtime: --impl=onnxruntime (the torch references exported) passes every contract that
applies, in the precision the runtime's kernels allow; OnnxSeq2Seq, the adapter a user names graph
files with, says in one line what is wrong with a graph or its names."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra [onnx])")
pytest.importorskip("onnx", reason="onnx is not installed (extra [onnx])")

import onnx  # noqa: E402

from conformance import FAMILIES, ModelSpec, Unsupported  # noqa: E402
from conformance.bridges import onnxruntime_bridge as bridge  # noqa: E402
from conformance.bridges.onnxruntime_bridge import OnnxSeq2Seq  # noqa: E402
from impls.onnxruntime.factory import exported  # noqa: E402
from tests.conformance_run import all_contracts, not_applicable, run_conformance  # noqa: E402

GRADIENTS = {"encoder_gradient_through_state", "future_tokens_do_not_change_past_gradients"}


def test_runtime_passes_every_contract_but_gradients_which_it_declines(pytester):
    run = run_conformance(pytester, "onnxruntime")
    assert run.outcome.ret == 0, "\n".join(run.messages())
    assert run.contracts("failed", "error") == set()
    outcomes = {(m["family"], m["contract"]): m["outcome"] for m in run.report["matrix"]}
    assert outcomes == {(family, contract): "passed" if contract not in GRADIENTS | not_applicable(family)
                        else "skipped" for family in FAMILIES for contract in all_contracts()}
    skipped = {r["message"] for r in run.report["results"] if r["contract"] in GRADIENTS}
    assert all("ONNX Runtime runs the exported graphs forward only: no gradients" in m for m in skipped), skipped
    dtypes = run.report["implementations"][0]["dtypes"]
    # Every kernel they need has a float64 version (speech's convolutions exported as MatMuls in float64).
    assert dtypes["transformer"] == dtypes["speech"] == "float64", dtypes
    # RNN, GRU and LSTM kernels are float32 only, and so is Conv (captioning's CNN).
    for family in ("rnn", "gru", "lstm", "bahdanau", "mixed", "captioning"):
        assert dtypes[family].startswith("float32 (float64 unavailable (") and "no kernel" in dtypes[family], dtypes[family]
    assert "Could not find an implementation for Conv(11)" in dtypes["captioning"], dtypes["captioning"]


def graphs(family="transformer", dtype="float64"):
    return exported(ModelSpec(family, dtype=dtype))


def renamed_input(model_bytes: bytes, old: str, new: str) -> bytes:
    model = onnx.load_from_string(model_bytes)
    for value in model.graph.input:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
    return model.SerializeToString()


def test_missing_input_name_is_one_line():
    g = graphs()
    with pytest.raises(ValueError, match=r"^encoder graph has no input 'tokens' for the source token ids \(its inputs: "
                                         r"input_ids, src_valid_len\): name it with names=\{\.\.\.\}$"):
        OnnxSeq2Seq(g["encoder"], g["decoder"], init_state=g["init_state"], names={"src": "tokens"})


def test_state_output_without_matching_input_is_one_line():
    g = graphs()
    decoder = renamed_input(g["decoder"], "past_key_values.1.decoder.value", "cache_1_value")
    with pytest.raises(ValueError, match=r"^decoder output 'present.1.decoder.value' is state with no matching decoder "
                                         r"input \('past_key_values.1.decoder.value' or 'past.1.decoder.value'\)"):
        OnnxSeq2Seq(g["encoder"], decoder, init_state=g["init_state"])
    # named, it runs
    OnnxSeq2Seq(g["encoder"], decoder, init_state=renamed_output(g["init_state"], "past_key_values.1.decoder.value",
                                                                  "cache_1_value"),
                state={"present.1.decoder.value": "cache_1_value"})


def renamed_output(model_bytes: bytes, old: str, new: str) -> bytes:
    model = onnx.load_from_string(model_bytes)
    for value in model.graph.output:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
    return model.SerializeToString()


def test_dtype_the_graph_does_not_take():
    g = graphs(dtype="float32")
    model = OnnxSeq2Seq(g["encoder"], g["decoder"], init_state=g["init_state"])
    with pytest.raises(Unsupported, match=r"the exported graphs compute in float32 \(decoder output 'logits'\), not float64"):
        bridge.wrap(model, ModelSpec("transformer", dtype="float64"))
    src, valid = np.array([[1, 2, 3]]), np.array([3])
    state = model.init_state(model.encode(src, valid), valid)
    state["encoder_attention_mask"] = state["encoder_attention_mask"].astype(np.float64)
    with pytest.raises(TypeError, match=r"^decoder input 'encoder_attention_mask' takes tensor\(bool\), but the state "
                                        r"holds float64 for it$"):
        model.decode(np.array([[1]]), state)


def test_unknown_role_and_unreadable_file():
    g = graphs()
    with pytest.raises(ValueError, match=r"names=\{'source'"):
        OnnxSeq2Seq(g["encoder"], g["decoder"], names={"source": "x"})
    with pytest.raises(ValueError, match=r"the encoder graph '/nonexistent.onnx' cannot be read"):
        OnnxSeq2Seq("/nonexistent.onnx", g["decoder"])


def test_weights_are_the_graphs_float_initializers_each_once():
    g = graphs()
    adapter = bridge.wrap(OnnxSeq2Seq(g["encoder"], g["decoder"], init_state=g["init_state"]), ModelSpec("transformer"))
    twice = bridge.wrap(OnnxSeq2Seq(g["encoder"], g["decoder"], init_state=g["init_state"], decoder_first=g["decoder"]),
                        ModelSpec("transformer"))
    weights = adapter.get_weights()
    assert {part: sorted(w) for part, w in twice.get_weights().items()} == {part: sorted(w) for part, w in weights.items()}
    assert all(w.dtype == np.float64 and w.size > 1 for named in weights.values() for w in named.values())
    src, tgt, valid = np.array([[1, 2, 3], [4, 5, 6]]), np.array([[1, 2], [3, 4]]), np.array([3, 2])
    before = adapter.forward(src, tgt, valid)
    name = next(iter(weights["encoder"]))
    adapter.set_weights({"encoder": {name: weights["encoder"][name] + 0.1}})
    assert not np.array_equal(adapter.forward(src, tgt, valid), before), f"perturbing {name} changed nothing"
    adapter.set_weights(weights)
    np.testing.assert_array_equal(adapter.forward(src, tgt, valid), before)


def test_float64_declined_where_the_cpu_provider_lacks_a_kernel():
    g = graphs("rnn", "float64")
    with pytest.raises(Unsupported, match=r"no kernel for the encoder graph: Could not find an implementation for RNN"):
        OnnxSeq2Seq(g["encoder"], g["decoder"], init_state=g["init_state"])


def test_empty_past_from_the_graphs_axis_names():
    g = graphs()
    model = OnnxSeq2Seq(g["encoder"], g["decoder"], init_state=g["init_state"])
    shape = model.decoder.inputs["past_key_values.0.decoder.key"].shape
    assert shape[0] == "batch" and shape[2] == "past_len", shape
    assert model._empty_shape("past_key_values.0.decoder.key", shape, 3) == (3, 4, 0, 8)
    with pytest.raises(ValueError, match="its batch axis is not named batch"):
        model._empty_shape("x", ["b", 4, "t", 8], 3)


def test_threads_reach_every_session():
    g = graphs()
    model = OnnxSeq2Seq(g["encoder"], g["decoder"], init_state=g["init_state"])
    previous = bridge.threads
    try:
        bridge.limit_threads(1)
        model.encode(np.array([[1, 2]]), np.array([2]))
        assert model.encoder.session.get_session_options().intra_op_num_threads == 1
    finally:
        bridge.threads = previous


def test_frames_and_images_are_fed_by_their_kind():
    """The exported speech encoder takes `input_features` with their lengths in frames and returns its
    subsampled lengths; the captioning graphs take `pixel_values` and no length at all, any image size."""
    speech = OnnxSeq2Seq(*(graphs("speech", "float32")[role] for role in ("encoder", "decoder")),
                         init_state=graphs("speech", "float32")["init_state"], names={"src": "input_features"})
    assert list(speech.encoder.inputs) == ["input_features", "src_valid_len"]
    frames = np.random.default_rng(0).standard_normal((2, 19, 8)).astype(np.float32)
    assert speech.encode(frames, np.array([19, 3]))["encoder_valid_lens"].tolist() == [5, 1]  # ((L-1)//2+1-1)//2+1
    g = graphs("captioning", "float32")
    captioning = OnnxSeq2Seq(g["encoder"], g["decoder"], init_state=g["init_state"], names={"src": "pixel_values"})
    assert list(captioning.encoder.inputs) == ["pixel_values"] and list(captioning.init_graph.inputs) == ["encoder_outputs"]
    images = np.random.default_rng(0).standard_normal((2, 3, 24, 32)).astype(np.float32)  # the spec's are 16x16
    assert captioning.encode(images, None)["encoder_outputs"].shape == (2, 3 * 4, 32)  # a 3x4 grid
    assert captioning.greedy(images, None, 1, 3).shape == (2, 3)
