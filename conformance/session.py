"""The run's state: the implementations under test, their models, the report being filled, and the
record of models that crashed or hung. One `ConformanceSession` per pytest process (the xdist
controller's and each worker's); conformance/plugin.py holds the pytest policy that uses it."""
from __future__ import annotations

import os
import pathlib
import tempfile

import pytest

from . import bridges, canonical, golden, harness, loading
from .faults import Faults, Hung, NotRun
from .report import ImplInfo, Report, Result
from .spec import FAMILIES, ModelSpec, device_name

FAULTS_DIR = "conformance_faults"  # workerinput key: the run's shared fault records
RESULT, IMPL_INFO, LOGITS = "conformance_result", "conformance_impl", "conformance_logits"  # user_properties names


class ConformanceSession:
    def __init__(self, config, supervision=None):
        opt = config.getoption
        self.worker = getattr(config, "workerinput", None)  # set in a pytest-xdist worker
        self.supervision = supervision  # set in the child of a supervised serial run (conformance/supervisor.py)
        self.journal = supervision.journal if supervision else None
        # pytest -n's controller only merges the workers' results: importing the factories is the workers'
        # job (9 s of CPU for the three frameworks), and a module that crashes on import then spares it.
        self.controller = self.worker is None and getattr(config.option, "dist", "no") != "no"
        shared = (self.worker or {}).get(FAULTS_DIR) or (str(supervision.dir) if supervision else None)
        shared = shared if shared and os.path.isdir(shared) else None  # a remote worker (--tx ssh=) keeps its own
        self.faults = Faults(shared or tempfile.mkdtemp(prefix="conformance-faults-"))
        self.owns_faults_dir = not shared
        names = dict.fromkeys(split_list(opt("impl")))  # each name once
        self.impls = [self.resolve(n) for n in names]
        # What the cross-framework contracts compare every implementation with (docs/weights.md).
        reference = opt("reference")
        self.reference = next((i for i in self.impls if i.name == reference), None) or self.resolve(reference)
        self.weights_dir = None  # canonical weights files, drawn from the seed when a contract first needs them
        self.weights_digests: dict[str, str] = {}  # their SHA-256, as written
        self.weights_changed_by: dict[tuple[str, str], str] = {}  # (impl, family) whose factory wrote to them: why
        self.families = split_list(opt("family")) or list(FAMILIES)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise pytest.UsageError(f"unknown --family {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
        self.seed = opt("conformance_seed")
        self.timeout = opt("conformance_timeout")
        self.report_path = opt("conformance_report")
        self.report_lock = None  # ReportLock, held where the report is written
        self.report_problem = ""  # why the report could not be written, if it could not
        self.pytest_session = None  # pytest's Session, once it starts
        self.threads = opt("conformance_threads") or (None if "OMP_NUM_THREADS" in os.environ else 1)
        bridges.limit_threads(self.threads)
        self.device = device_name(opt("device"))
        self.models = loading.ModelCache(self.seed, self.timeout, self.device)
        self.report = Report(self.seed)
        for impl in self.impls:
            self.report.impls[impl.name] = ImplInfo(impl.name, impl.target, error=impl.error)
        self.xfail_ids = read_id_file(opt("xfails_file"))
        self.contracts_collected = False  # this process collected contracts (an xdist controller collects none)
        self.unusable_reported: set[tuple] = set()  # (impl, family, dtype) whose reason was printed in full
        self.crash_log = None
        self.done: set[str] = set()  # contracts that have a verdict from an earlier child of this supervised run
        if supervision is not None and supervision.attempt:
            self.report.started = supervision.started
            self.done = replay(self.journal.events(), self.report)

    def resolve(self, name: str) -> loading.Impl:
        if self.controller:
            return loading.Impl(name, loading.BUILTIN.get(name, name))
        crashed = self.faults.find(f"{name}@import")
        if crashed:  # in an earlier child of this supervised run
            return loading.Impl(name, loading.BUILTIN.get(name, name), error=crashed)
        if self.journal:
            self.journal.write(trying=[name, None])
        impl = loading.resolve(name)
        if self.journal:
            self.journal.write(tried=[name, None])
        return impl

    def impl(self, name: str) -> loading.Impl:
        return next(i for i in self.impls if i.name == name)

    def model(self, impl_name: str, family: str, dtype: str | None = None) -> harness.CheckedModel:
        """The checked model, or skip (declined) / fail (broken) / not run (crashed or hung before) the contract."""
        fault = self.faults.find(impl_name, f"{impl_name}/{family}")
        if fault:
            raise NotRun(fault)
        impl = self.impl(impl_name)
        built = self.models.precise(impl, family) if dtype is None else self.models.get(impl, family, dtype)
        if dtype is None and isinstance(built, loading.Declined):  # unless every family is declined (an error)
            self.models.refuse_if_all_declined(impl, self.families)
            built = self.models.precise(impl, family)
        if isinstance(built, loading.Declined):
            pytest.skip(built.reason)
        if isinstance(built, loading.Broken) and built.hung:
            raise Hung(f"hung before any contract ran: {built.reason}")
        if isinstance(built, loading.Broken):
            if (impl_name, family, dtype) in self.unusable_reported:  # one full line per model, not one per contract
                raise harness.UnusableAsBefore(f"{impl_name} cannot be used for {family}: see its first error")
            self.unusable_reported.add((impl_name, family, dtype))
            if dtype is None:
                self.report.impls[impl_name].unusable[family] = built.reason
            pytest.fail(built.reason, pytrace=False)
        if dtype is None:
            self.note_model(built)
        return built

    def canonical(self, impl: loading.Impl, family: str, dtype: str, weights: str | None = None, device: str | None = None,
                  **sizes) -> harness.CheckedModel:
        """`impl` built from canonical weights (the run's for `family` unless given, of a spec with
        other `sizes` if given), on the run's device unless given, or skip (it does not load them)."""
        runs_weights = weights is None
        if runs_weights:
            weights = self.canonical_weights(family)
            if (impl.name, family) in self.weights_changed_by:
                pytest.fail(self.weights_changed_by[impl.name, family], pytrace=False)
            if not self.weights_intact(weights):
                pytest.fail(f"the canonical weights file {weights} changed after the suite wrote it: its SHA-256 differs",
                            pytrace=False)
        built = self.models.get(impl, family, dtype, weights, device, **sizes)
        if runs_weights and not self.weights_intact(weights):
            # The factory wrote to the file it was handed: its models are not built from the canonical
            # weights, and the file is written again for the implementations after it.
            self.weights_changed_by[impl.name, family] = (
                f"{impl.name}'s factory changed the canonical weights file it was handed ({weights}: its SHA-256 "
                "differs after the build); a factory must only read spec.weights")
            self.write_canonical_weights(family, pathlib.Path(weights))
            pytest.fail(self.weights_changed_by[impl.name, family], pytrace=False)
        if isinstance(built, loading.Declined):
            pytest.skip(built.reason)
        if isinstance(built, loading.Broken):
            pytest.fail(f"{impl.name}, built from canonical weights: {built.reason}", pytrace=False)
        if not (built.canonical_weights or built.weights_id):
            pytest.skip(f"{impl.name} does not declare that it loads canonical weights "
                        "(spec.weights; docs/weights.md says how)")
        return built

    def canonical_weights(self, family: str) -> str:
        """The canonical weights file of `family` for this seed: the same in every xdist worker."""
        if self.weights_dir is None:
            self.weights_dir = tempfile.mkdtemp(prefix="conformance-weights-")
        path = pathlib.Path(self.weights_dir, f"{family}-seed{self.seed}.safetensors")
        if not path.exists():
            self.write_canonical_weights(family, path)
        return str(path)

    def write_canonical_weights(self, family: str, path: pathlib.Path) -> None:
        canonical.save(path, canonical.random_weights(ModelSpec(family), seed=self.seed))
        self.weights_digests[str(path)] = golden.sha256(path)  # what a factory is handed is checked against it

    def weights_intact(self, path: str) -> bool:
        try:
            return golden.sha256(pathlib.Path(path)) == self.weights_digests[path]
        except OSError:  # removed
            return False

    def describe(self, impl: loading.Impl) -> None:
        """Build the first family's model now, so the header can name backend, version and device."""
        if impl.error:
            return
        built = self.models.precise(impl, self.families[0])
        if isinstance(built, harness.CheckedModel):
            self.note_model(built)

    def note_model(self, model: harness.CheckedModel) -> None:
        info = self.report.impls[model.impl_name]
        adapter = model.adapter
        # Plain str: these travel from xdist workers, which cannot send torch's TorchVersion.
        info.backend = str(getattr(adapter, "backend", "?"))
        info.framework_version = str(getattr(adapter, "framework_version", "?"))
        info.device = str(getattr(adapter, "device", "?"))
        info.dtypes[model.family] = model.dtype + (f" ({model.note})" if model.note else "")



def absorb(report: Report, properties) -> bool:
    """Put what a test report carries (its user_properties: a result, an implementation's header,
    logits for the difference matrix) into `report`; whether a result was among it."""
    added = False
    for name, value in properties:
        if name == RESULT:
            report.add(Result(**value))
            added = True
        elif name == IMPL_INFO:
            info = report.impls.setdefault(value["name"], ImplInfo(value["name"], value["target"]))
            for field in ("backend", "framework_version", "device", "error"):
                if value[field] not in ("?", ""):
                    setattr(info, field, value[field])
            info.dtypes.update(value["dtypes"])
            info.unusable.update(value["unusable"])
        elif name == LOGITS:
            report.add_logits(**value)
    return added


def replay(events: list[dict], report: Report) -> set[str]:
    """Put what a supervised run's journal holds into `report`; the node ids that have a verdict."""
    for event in events:
        if "properties" in event:
            absorb(report, event["properties"])
        elif "crash" in event:
            report.crashes.append(event["crash"])
    return {r.nodeid for r in report.results}


def split_list(values) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def read_id_file(path) -> list[str]:
    """The ids in an --xfails-file: UTF-8 text (a byte-order mark is allowed and dropped), one id per
    line, `#` comments; ValueError saying why a file is not such text."""
    if not path:
        return []
    data = pathlib.Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not a text file: byte 0x{data[exc.start]:02x} at offset {exc.start} is not UTF-8") from None
    control = next((c for c in text if c in "\x00\x1b" or ("\x00" < c < " " and c not in "\t\r\n")), None)
    if control is not None:
        raise ValueError(f"not a text file: control character {control!r} at offset {text.index(control)}")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]
