"""translate.inference.loading errors. (Restoring trained networks is tested through its users:
test_export (pix2pix, CycleGAN), test_unpaired_train and test_ugatit.)"""
import pytest

tf = pytest.importorskip("tensorflow")

from translate.inference import loading  # noqa: E402


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(loading.LoadError, match="no such folder"):
        loading.load(str(tmp_path / "nope"))
    with pytest.raises(loading.LoadError, match="flags.json"):
        loading.load(str(tmp_path))
