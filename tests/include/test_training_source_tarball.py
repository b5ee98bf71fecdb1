"""The training source tarball makes the job install nothing at start (it runs network-isolated).

The SageMaker training toolkit pip-installs at job start when the source directory holds a
requirements.txt (``pip install -r``) or a setup.py (``pip install .``); the tarball of the
repository's training/ holds neither, and a package that does is refused.
"""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from include import sagemaker_requests as requests


def tarball_names(tarball: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(tarball))) as archive:
        return archive.getnames()


def test_the_training_source_tarball_carries_nothing_that_installs_at_job_start():
    names = tarball_names(requests.build_source_tarball())  # the repository's training/

    assert "train.py" in names
    assert "image_packages.txt" in names  # what the code relies on the image for travels with it
    assert "requirements.txt" not in names
    assert "setup.py" not in names
    # The monitoring jobs' code rides along at its own paths; the worker's HTML renderer does not.
    assert {"process.py", "include/__init__.py", "include/monitoring/job.py"} <= set(names)
    assert "include/monitoring/report.py" not in names
    assert "include/config.py" not in names


def test_a_missing_shared_module_is_named(tmp_path):
    package = tmp_path / "training"
    package.mkdir()
    (package / "train.py").write_text("print('train')\n")

    with pytest.raises(FileNotFoundError, match=r"shared module .*include/monitoring/job\.py"):
        requests.build_source_tarball(
            repo_root=tmp_path, shared_modules=["include/monitoring/job.py"]
        )


@pytest.mark.parametrize("trigger", ["requirements.txt", "setup.py"])
def test_a_package_that_would_pip_install_at_job_start_is_refused(tmp_path, trigger):
    package = tmp_path / "training"
    package.mkdir()
    (package / "train.py").write_text("print('train')\n")
    (package / trigger).write_text("pyarrow==26.0.1\n")

    with pytest.raises(ValueError) as refused:
        requests.build_source_tarball(repo_root=tmp_path)
    assert str(refused.value) == (
        f"{package / trigger} would make the training job pip-install at start, which it cannot "
        "do with network isolation: use what the training image has "
        "(training/image_packages.txt) or change the image"
    )


def test_a_requirements_file_below_the_root_is_not_an_install_trigger(tmp_path):
    """The toolkit looks at the source directory's root only."""
    package = tmp_path / "training"
    (package / "docs").mkdir(parents=True)
    (package / "train.py").write_text("print('train')\n")
    (package / "docs" / "requirements.txt").write_text("sphinx\n")

    names = tarball_names(requests.build_source_tarball(repo_root=tmp_path, shared_modules=()))
    assert sorted(names) == ["docs/requirements.txt", "train.py"]
