"""Findings: the root causes of a run's failures, each once, with the contracts it explains.

A wall of red often has few causes: a model random in evaluation mode fails every contract that
compares two calls; a decoder that sees the future fails the autoregressive contracts too. The report
opens with one finding per cause: the cause in one sentence, the contracts it explains, and the one
reproduce line that shows it best. A failure is traced to its cause in two places:

- where it happens (`explain`, from the plugin), by what the model is known to do:
  * a comparison made with calls that do not repeat (conformance/repeatability.py) could not judge,
    and says so instead of naming a bug it cannot see;
  * a contract that found what it relies on broken said so itself (`CannotJudge`: wrong gradients);
  * the same exception, bad output or opaque state is one cause wherever it stops a contract;
  * `logits_dtype_follows_spec` in float64, where the float64 build was unusable: the header's fallback;
- once every result is in (`collect`): a failing contract whose cause necessarily fails another
  (`FOLLOWS`) explains the other's failure, unless the other fails for a reason of its own too.

A contract's failure that no rule explains is a finding of its own: two independent bugs stay two.
"""
from __future__ import annotations

import dataclasses
import math
import re

from . import text, tolerances
from .harness import FLOAT64_UNAVAILABLE, CannotJudge, ConformanceError, ContractFailure
from .repeatability import describe
from .spec import FAMILIES

FAILING = ("crashed", "hung", "error", "failed")  # as conformance.report.FAILING, which imports this module

NOT_DETERMINISTIC = "evaluation is not deterministic"
GRADIENTS_NOT_REPEATABLE = "backward passes are not repeatable"
GRADIENTS_WRONG = "gradients are wrong"
FLOAT64_UNUSABLE = "float64 is unusable"

# Causes the model's own behaviour establishes: (one sentence, the contract whose failure is the cause).
CAUSES = {
    NOT_DETERMINISTIC: ("two identical calls in evaluation mode give different numbers (dropout or another random "
                        "operation stays on), so a contract that compares two calls measures that noise",
                        "eval_calls_agree_exactly"),
    GRADIENTS_NOT_REPEATABLE: ("two identical backward passes give different gradients while the forward pass "
                               "repeats: something random runs only while gradients are recorded (MXNet's fused "
                               "RNN drops out under autograd.record)", ""),  # no contract shows it: every one follows
    GRADIENTS_WRONG: ("the gradients disagree with finite differences of the model's own logits, so a contract "
                      "that compares gradients sees that error first", "encoder_gradient_through_state"),
    FLOAT64_UNUSABLE: ("the float64 build cannot be used (the header says why), so every other contract ran the "
                       "float32 build, at float32 tolerances", "logits_dtype_follows_spec"),
}
ORDER = (NOT_DETERMINISTIC, GRADIENTS_NOT_REPEATABLE, GRADIENTS_WRONG, FLOAT64_UNUSABLE)

# What a contract's failure says is wrong, where it is the root of a finding.
CONTRACT_CAUSES = {
    "stepwise_equals_teacher_forced": "decoding on through the returned state differs from one pass over the target",
    "chunked_equals_teacher_forced": "decoding several tokens per call on a state differs from one pass (one token "
                                     "per call agrees)",
    "greedy_cached_equals_recomputed": "greedy decoding through the state differs from recomputing the prefix",
    "example_alone_equals_example_in_batch": "an example's logits depend on the other examples of its batch",
    "future_tokens_do_not_change_past_logits": "the decoder is not causal: logits depend on later target tokens",
    "future_tokens_do_not_change_past_gradients": "gradients of earlier logits depend on later target tokens",
    "changed_token_changes_its_own_logits": "a step's logits do not depend on that step's target token",
    "logits_match_reference": "built from the canonical weights, the model computes other logits than the reference",
    "greedy_tokens_match_reference": "greedy tokens differ from the reference's",
    "golden_vectors": "built from the golden weights, the model does not reproduce the golden vectors",
    "eval_calls_agree_exactly": NOT_DETERMINISTIC,
    "eval_calls_leave_model_unchanged": "an evaluation-mode call changes the model's parameters or buffers (running "
                                        "statistics, counters)",
    "out_of_vocabulary_source_raises": "an out-of-vocabulary token id gives logits instead of an error",
    "out_of_vocabulary_target_raises": "an out-of-vocabulary token id gives logits instead of an error",
    "wrong_source_size_raises": "a source of another feature or channel count gives logits instead of an error",
    "extra_padding_changes_nothing": "the source beyond its valid lengths (token ids, frames) reaches the encoder's "
                                     "valid outputs or the logits",
    "garbage_beyond_valid_length_changes_nothing": "the source beyond its valid lengths (token ids, frames) reaches "
                                                   "the encoder's valid outputs or the logits",
    "logits_shape": "logits are not (batch, steps, tgt_vocab)",
    "logits_dtype_follows_spec": "the model does not compute in the dtype the spec asks for",
    "encoder_outputs_have_batch_axis": "an encoder output has no batch axis",
    "state_leaves_have_batch_axis": "a state leaf has no batch axis, or it moves while decoding",
    "encoder_lengths_are_as_declared": "the encoder's outputs do not have the declared lengths "
                                       "(Declared(encoder_lengths=...), the source lengths unless declared)",
    "forward_chains_encoder_and_decoder": "EncoderDecoder.forward differs from encoder -> init_state -> decoder",
    "outputs_depend_on_source": "the logits do not depend on the source",
    "init_state_keeps_encoder_outputs": "init_state or decoding modifies the encoder's outputs",
    "encoder_gradient_through_state": "the gradient through the state to the encoder disagrees with finite differences",
    "decode_twice_from_same_state": "two decodes from one state give different results",
    "decode_does_not_mutate_state": "decoding modifies the state it is given, in place",
    "reordered_state_decodes_reordered_examples": "a state reordered along its batch axis does not decode the "
                                                  "reordered examples",
}

CONTRACTS = list(CONTRACT_CAUSES)  # the order findings and their contracts are listed in

# A failing contract (key), the root of a finding, explains the failure of these in the same model: its
# cause fails them too. No chains: a contract explained by another is no root itself (the padding contracts
# explain a reordered state's failure only through batch independence, which then names it). Roots are
# tried in this order. A cause can hide another that fails the same contracts (a decoder that sees the
# future hides positions that restart at every call): fix the first and run again.
FOLLOWS = {
    "future_tokens_do_not_change_past_logits": {"stepwise_equals_teacher_forced", "chunked_equals_teacher_forced",
                                                "greedy_cached_equals_recomputed",
                                                "future_tokens_do_not_change_past_gradients"},
    "stepwise_equals_teacher_forced": {"chunked_equals_teacher_forced", "greedy_cached_equals_recomputed"},
    "extra_padding_changes_nothing": {"garbage_beyond_valid_length_changes_nothing"},
    "state_leaves_have_batch_axis": {"reordered_state_decodes_reordered_examples"},
    "example_alone_equals_example_in_batch": {"reordered_state_decodes_reordered_examples"},
    "decode_does_not_mutate_state": {"decode_twice_from_same_state"},
    "logits_match_reference": {"greedy_tokens_match_reference", "golden_vectors"},
}
# The contracts that hand a state that has decoded more than one token in one call.
SEVERAL_TOKENS_ON_A_DECODED_STATE = {"chunked_equals_teacher_forced", "decode_twice_from_same_state",
                                     "decode_does_not_mutate_state", "reordered_state_decodes_reordered_examples"}
FACT_FOLLOWS = {GRADIENTS_WRONG: {"encoder_gradient_through_state"}}  # a cause the model showed: same, by contract


def explain(contract: str, model, exc: BaseException, params: dict, line: str) -> tuple[str, str]:
    """Where a contract fails: (the cause, if the model's behaviour names one, else ''; its verdict line,
    `line` as the contract wrote it or one that says what it follows from)."""
    if isinstance(exc, CannotJudge):
        return exc.cause, f"{line}; follows from: {exc.cause}"
    if contract == CAUSES[NOT_DETERMINISTIC][1] and isinstance(exc, ContractFailure):
        return NOT_DETERMINISTIC, line
    noise = unrepeatable(model, exc)
    if noise:
        cause, why = noise
        return cause, f"[{contract}] could not judge: it compares calls that do not repeat: {why}; follows from: {cause}"
    if (contract == "logits_dtype_follows_spec" and params.get("dtype") == "float64" and model is not None
            and model.note.startswith(FLOAT64_UNAVAILABLE)):
        return FLOAT64_UNUSABLE, f"{line}: the cause of the header's float32 fallback"
    if isinstance(exc, ConformanceError) and not isinstance(exc, ContractFailure) and exc.reason:
        return f"the model {exc.reason}", line  # raised, returned what the interface forbids, hid its state
    return "", line


def unrepeatable(model, exc: BaseException) -> tuple[str, str] | None:
    """(cause, why) where a comparison failed by no more than the calls it made differ from themselves;
    None where that cannot explain it."""
    if model is None or not isinstance(exc, ContractFailure) or not exc.compared:
        return None
    used = {path: noise for path, noise in model.randomness.items() if path in model.used and noise > 0}
    if not used:
        return None
    path, noise = max(used.items(), key=lambda item: item[1])
    if not (noise > tolerances.CLOSE[model.precision] if exc.measured is None else exc.measured <= 10 * noise):
        return None  # a disagreement far beyond the noise: a bug of its own
    # Gradients computed through a forward pass that is random are random for that reason.
    evaluation_random = any(model.randomness.get(p, 0) > 0 for p in ("decode", "forward"))
    return NOT_DETERMINISTIC if evaluation_random else GRADIENTS_NOT_REPEATABLE, describe(path, noise)


# Findings of each kind come in this order: the model could not be used; a cause its behaviour showed;
# an error of the model's own (an exception, bad output, a state it hides); a contract's failure.
KINDS = ("unusable", "fact", "model", "contract")


@dataclasses.dataclass
class Finding:
    impl: str
    kind: str  # one of KINDS
    title: str  # the cause in a few words, as "follows from: ..." names it
    sentence: str  # the cause in one sentence ('' where the title says it all)
    evidence: object  # the Result whose reproduce line shows it best
    results: list  # every failing Result it explains, the evidence's included
    roots: frozenset  # the contracts whose failure is the cause itself; the others follow from it

    def families(self) -> list[str]:
        return list(dict.fromkeys(r.family for r in self.results))

    def contracts(self, following: bool) -> dict[str, list]:
        """{contract: its results}, of the root contracts or of those that follow from the cause."""
        out: dict[str, list] = {}
        for r in self.results:
            if (r.contract not in self.roots) == following:
                out.setdefault(r.contract, []).append(r)
        return out

    def follows(self, result) -> bool:
        return result.contract not in self.roots


def collect(results, impl_order=()) -> list[Finding]:
    """The findings of a run's results, causes established by the model first, in --impl order."""
    impls = list(impl_order)
    # In one order whatever order the results came in (pytest -n): families as FAMILIES, contracts as listed here.
    failing = sorted((r for r in results if r.outcome in FAILING), key=lambda r: (
        position(impls, r.impl), position(FAMILIES, r.family), position(CONTRACTS, r.contract), r.contract, r.nodeid))
    keyed: dict[tuple, list] = {}  # (impl, kind, key) -> results
    for (impl, family), of_model in group(failing, lambda r: (r.impl, r.family)).items():
        for r, key in assign(of_model):
            keyed.setdefault((impl, *key), []).append(r)

    def order(f: Finding) -> tuple:
        within = ORDER.index(f.title) if f.kind == "fact" else position(CONTRACTS, f.evidence.contract)
        return position(impls, f.impl), KINDS.index(f.kind), within, f.title

    found = sorted((finding(impl, kind, key, rs) for (impl, kind, key), rs in keyed.items()), key=order)
    for f in found:
        if f.kind == "model" and {r.contract for r in f.results} <= SEVERAL_TOKENS_ON_A_DECODED_STATE:
            failed_stepwise = {(r.impl, r.family) for r in failing if r.contract == "stepwise_equals_teacher_forced"}
            if not {(r.impl, r.family) for r in f.results} & failed_stepwise:
                f.sentence = ("only contracts that feed several tokens to a state that has decoded raise, and one token "
                              "per call works: if the decoder takes one token per call by design, declare it "
                              "(Declared(model, tokens_per_call=1))")
    return found


def assign(results) -> list[tuple[object, tuple[str, str]]]:
    """(result, (kind, key)) for every failing result of one model."""
    out, open_ = [], []
    for r in results:
        if r.outcome in ("error", "hung", "crashed"):
            out.append((r, ("unusable", r.outcome if r.outcome != "error" else "error")))
        elif r.cause in CAUSES:
            out.append((r, ("fact", r.cause)))
        elif r.cause:
            out.append((r, ("model", re.sub(r"\d+", "N", r.cause))))
        else:
            open_.append(r)
    causes = {key for _, (kind, key) in out if kind == "fact"}
    by_contract = group(open_, lambda r: r.contract)
    roots: list[str] = []
    for contract in sorted(by_contract, key=lambda c: position(list(FOLLOWS), c)):
        explained_by = next((root for root in roots if contract in FOLLOWS.get(root, ())), None)
        fact = next((cause for cause in causes if contract in FACT_FOLLOWS.get(cause, ())), None)
        if fact:
            out += [(r, ("fact", fact)) for r in by_contract[contract]]
            continue
        if explained_by is None:
            roots.append(contract)
        root = explained_by or contract
        out += [(r, ("contract", CONTRACT_CAUSES.get(root, f"{root} fails"))) for r in by_contract[contract]]
    return out


def finding(impl: str, kind: str, key: str, results: list) -> Finding:
    if kind == "fact":
        sentence, shown_by = CAUSES[key]
        return Finding(impl, kind, key, sentence, best(results, {shown_by}), results, frozenset({shown_by}))
    if kind == "model":
        evidence = best(results, set())
        return Finding(impl, kind, evidence.cause, "", evidence, results, frozenset({evidence.contract}))
    if kind == "unusable":
        title = {"error": "the model cannot be used", "hung": "the model hangs", "crashed": "the model crashes"}[key]
        first = next((r for r in results if "see its first error" not in r.message), results[0])
        return Finding(impl, kind, title, "", first, results, frozenset(r.contract for r in results))
    roots = {c for c, title in CONTRACT_CAUSES.items() if title == key} | {key.removesuffix(" fails")}
    return Finding(impl, kind, key, "", best(results, roots), results, frozenset(roots))


def best(results: list, contracts: set):
    """The evidence: a result of the contract that shows the cause, its smallest case first."""
    preferred = [r for r in results if r.contract in contracts] or results
    return min(preferred, key=lambda r: (not r.reproduce, math.prod(int(n) for n in re.findall(r"\d+", r.case))))


def position(order, item) -> int:
    return order.index(item) if item in order else len(order)


def group(items, key) -> dict:
    out: dict = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


# Rendering: the same findings in the terminal, Markdown, HTML and JSON.

def summary(findings: list[Finding]) -> str:
    cases = sum(len(f.results) for f in findings)
    return f"{len(findings)} cause{'s' if len(findings) != 1 else ''} of the {cases} failed contract case{'s' if cases != 1 else ''}"


def contract_list(contracts: dict[str, list]) -> str:
    """'a (2 cases), b (could not judge)'."""
    parts = []
    for contract, results in contracts.items():
        notes = [f"{len(results)} cases"] if len(results) > 1 else []
        if any("could not judge" in r.message for r in results):
            notes.append("could not judge")
        parts.append(contract + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(parts)


def lines(finding: Finding, number: int) -> list[str]:
    """A finding as the terminal and the Markdown report show it: first line, then indented details."""
    families = ", ".join(finding.families())
    out = [f"{number}. {finding.title} [{finding.impl}; {families}]"]
    if finding.sentence:
        out.append(f"   {finding.sentence}")
    out.append(f"   shown by: {finding.evidence.message}")
    roots = finding.contracts(following=False)
    following = finding.contracts(following=True)
    if roots:
        out.append(f"   failed: {contract_list(roots)}")
    if following:
        out.append(f"   follows from it: {contract_list(following)}")
    if finding.evidence.reproduce:
        out.append(f"   reproduce: {finding.evidence.reproduce}")
    return out


def markdown(finding: Finding, number: int) -> str:
    """A finding as a numbered Markdown item: messages and names as code, so nothing in them is markup."""
    roots, following = finding.contracts(following=False), finding.contracts(following=True)
    parts = [f"{number}. **{text.markdown(finding.title)}** ({code(finding.impl)}; {', '.join(finding.families())})"]
    if finding.sentence:
        parts.append(text.markdown(finding.sentence))  # a title or sentence may quote the model's own words
    parts.append(f"shown by: {code(finding.evidence.message)}")
    if roots:
        parts.append(f"failed: {code(contract_list(roots))}")
    if following:
        parts.append(f"follows from it: {code(contract_list(following))}")
    if finding.evidence.reproduce:
        parts.append(f"reproduce: {code(finding.evidence.reproduce)}")
    return "  \n   ".join(parts)


def code(text: str) -> str:
    """`text` as a Markdown code span, fenced by more backticks than any run inside it."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if fence != "`" else f"`{text}`"


def as_dict(finding: Finding) -> dict:
    return {
        "impl": finding.impl,
        "cause": finding.title,
        "sentence": finding.sentence,
        "families": finding.families(),
        "shown_by": finding.evidence.nodeid,
        "message": finding.evidence.message,
        "reproduce": finding.evidence.reproduce,
        "contracts": sorted(finding.contracts(following=False)),
        "follow": sorted(finding.contracts(following=True)),
    }


def follows_from(findings: list[Finding]) -> dict[str, str]:
    """{nodeid: the cause its failure follows from} for the failures that are not a cause themselves."""
    return {r.nodeid: f.title for f in findings for r in f.results if f.follows(r)}
