import copy

import pytest
import torch

from engine.optim import SGD, Adam


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_the_updates_match_torch_optim(kind):
    torch.manual_seed(0)
    ours_model = torch.nn.LSTM(5, 7, batch_first=True)
    reference_model = copy.deepcopy(ours_model)
    if kind == "sgd":
        ours, reference = SGD(ours_model.parameters(), lr=0.1), torch.optim.SGD(reference_model.parameters(), lr=0.1)
    else:
        ours, reference = Adam(ours_model.parameters(), lr=1e-2), torch.optim.Adam(reference_model.parameters(), lr=1e-2)
    for _ in range(5):
        x = torch.randn(4, 3, 5)
        for model, optimizer in ((ours_model, ours), (reference_model, reference)):
            optimizer.zero_grad()
            model(x)[0].pow(2).sum().backward()
            optimizer.step()
    for mine, theirs in zip(ours_model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-5)


def test_adam_state_round_trips_through_a_checkpoint(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "state.pt")
    fresh = Adam(model.parameters(), lr=1.0)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert fresh.lr == 1e-2 and fresh.steps[0].item() == 1
    torch.testing.assert_close(fresh.exp_avg[0], optimizer.exp_avg[0])
    with pytest.raises(ValueError):
        SGD(model.parameters(), lr=0.1).load_state_dict(optimizer.state_dict())
    transposed = torch.nn.Linear(2, 3)  # the same number of tensors, held in another shape
    with pytest.raises(ValueError, match="does not fit"):
        Adam(transposed.parameters(), lr=1e-2).load_state_dict(optimizer.state_dict())


def test_no_slow_compiler_import_on_the_training_path():
    import subprocess
    import sys

    code = ("from engine.config import build_config; from engine.runner import Runner; import sys;"
            "Runner(build_config(epochs=1, checkpoint_dir=sys.argv[1]), lambda e: None).run();"
            "print('torch._dynamo' in sys.modules)")
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
