"""The torch bridge seeds as torch.manual_seed does, where it matters: the generators a run can use."""
import pytest

torch = pytest.importorskip("torch")

from conformance.bridges import torch_bridge  # noqa: E402


def test_seeding_draws_what_manual_seed_draws():
    """The contracts seed every framework before each one (conformance/plugin.py); on a machine with no
    accelerator the bridge seeds the CPU generator alone, which every CPU op draws from (dropout too)."""
    def draws():
        return torch.cat([torch.rand(4), torch.randn(4), torch.nn.functional.dropout(torch.ones(8), 0.5)])

    torch.manual_seed(7)
    expected = draws()
    torch.manual_seed(8)
    torch_bridge.seed(7)
    assert torch.equal(draws(), expected), "draws after the bridge's seed(7) differ from torch.manual_seed(7)'s"
