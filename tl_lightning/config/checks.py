"""Small value checks shared by the schemas' ``check`` methods (schema.py) and validate.py: each raises one
ConfigError line naming the key, what is wrong and what is valid."""

from omegaconf import OmegaConf

from tl_lightning.errors import ConfigError


def check_choice(value, valid, key: str) -> None:
    if value not in valid:
        raise ConfigError(f"config key '{key}': '{value}' is not valid; valid: "
                          f"{', '.join('null' if v is None else str(v) for v in valid)}")


def check_positive(value, key: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"config key '{key}': must be a positive number, got {value}")


def check_in(value, low: float, high: float, key: str, low_open: bool = False, high_open: bool = True,
             hint: str = "") -> None:
    """``value`` in the interval from low to high (open or closed at each end)."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"config key '{key}': must be in {interval}{hint}, got {value}")


def run_checks(node, root=None) -> None:
    """Every ``check`` classmethod along the MRO of ``node``'s schema type, base class first: each schema checks
    its own keys (``root``: the whole config, for checks that depend on another group, or None)."""
    schema_type = OmegaConf.get_type(node)
    for klass in reversed(getattr(schema_type, "__mro__", ())):
        check = vars(klass).get("check")
        if check is not None:
            check.__func__(schema_type, node, root)
