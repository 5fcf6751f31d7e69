"""Name -> fusion class. A new strategy is one module that calls ``register_fusion`` plus one config file."""
import inspect
from typing import Dict, List, Sequence, Type

from .base import BranchSpec, Fusion, FusionOptions

_FUSIONS: Dict[str, Type[Fusion]] = {}


def register_fusion(name: str):
    def add(cls: Type[Fusion]) -> Type[Fusion]:
        if name in _FUSIONS:
            raise ValueError(f"fusion {name!r} is registered twice ({_FUSIONS[name].__name__}, {cls.__name__})")
        cls.fusion_name = name
        _FUSIONS[name] = cls
        return cls

    return add


def fusion_names():
    return sorted(_FUSIONS)


def fusion_class(name: str) -> Type[Fusion]:
    if name not in _FUSIONS:
        raise ValueError(f"unknown fusion {name!r}: pick one of {', '.join(fusion_names())}")
    return _FUSIONS[name]


def fusion_parameters(name: str) -> List[str]:
    """The strategy-specific options a strategy's constructor takes (e.g. ``layers``)."""
    signature = inspect.signature(fusion_class(name).__init__)
    return [p for p in signature.parameters if p not in ("self", "branches", "options")]


def build_fusion(name: str, branches: Sequence[BranchSpec], options: FusionOptions, **strategy_options) -> Fusion:
    cls = fusion_class(name)
    accepted = fusion_parameters(name)
    unknown = sorted(set(strategy_options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        keys = " and ".join("fusion.layers" if key == "layers" else f"fusion.options.{key}" for key in unknown)
        takers = [other for other in fusion_names() if set(unknown) <= set(fusion_parameters(other))]
        elsewhere = f", or pick a strategy that takes it ({', '.join(takers)})" if takers else ""
        raise ValueError(f"fusion {name!r} does not take {', '.join(unknown)}: it takes {takes}; "
                         f"drop {keys}{elsewhere}")
    return cls(branches, options, **strategy_options)
