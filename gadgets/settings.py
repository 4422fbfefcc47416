"""Typed settings of our gadgets, parsed once from the chain's ``<configuration>``.

Gadgetron sends an external node the ``<configuration>`` element of its
``<external>`` block; gadgetron-python parses it into an ElementTree element
(``connection.config``), ``None`` when the element was missing. Every property
arrives as a string. :func:`properties` turns any of these (element, XML text,
dict, ``None``) into a ``{name: value}`` dict; the ``*Settings.from_config``
constructors validate names and values and raise :class:`ChainConfigError`
naming the property, so a typo in a chain fails at the start of a scan, not in
the middle of one.

:data:`PROPERTIES` lists the properties each gadget reads (the schema test of
``config_xml/`` checks chains against it).
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, Optional, Union

from gadgets.errors import ChainConfigError

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off", "")


def properties(config) -> Dict[str, str]:
    """``{name: value}`` of a node's ``<property name=.. value=..>`` entries.

    Accepts an ElementTree element (``<configuration>`` or the ``<external>`` around
    it), XML text, a dict, or ``None`` (no properties). Legacy
    ``<property><name>..</name><value>..</value></property>`` entries are read too.
    """
    if config is None:
        return {}
    if isinstance(config, dict):
        return {str(k): "" if v is None else str(v) for k, v in config.items()}
    if isinstance(config, (str, bytes)):
        try:
            config = ET.fromstring(config)
        except ET.ParseError as exc:
            raise ChainConfigError(f"gadget configuration is not valid XML: {exc}") from None
    out = {}
    for prop in config.iter("property"):
        name = prop.get("name")
        value = prop.get("value")
        if name is None:  # legacy form
            name = (prop.findtext("name") or "").strip()
            value = prop.findtext("value")
        if not name:
            raise ChainConfigError(f"a <property> without a name in {ET.tostring(config, encoding='unicode')[:200]}")
        out[name] = "" if value is None else value.strip()
    return out


def _bool(name, value):
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise ChainConfigError(f"property {name!r}: expected true/false, got {value!r}")


def _number(kind, name, value, minimum=None):
    try:
        number = kind(value)
    except ValueError:
        raise ChainConfigError(f"property {name!r}: expected {kind.__name__}, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ChainConfigError(f"property {name!r}: must be >= {minimum}, got {value!r}")
    return number


def _choice(name, value, choices):
    if value not in choices:
        raise ChainConfigError(f"property {name!r}: {value!r} is not one of {list(choices)}")
    return value


def _check_names(gadget: str, props: Dict[str, str]):
    unknown = sorted(set(props) - set(PROPERTIES[gadget]))
    if unknown:
        raise ChainConfigError(f"{gadget}: unknown properties {unknown}; known: {sorted(PROPERTIES[gadget])}")


@dataclass(frozen=True)
class CoilSensitivitySettings:
    """Properties of ``gadgets.coil_sensitivity``."""

    method: str = "espirit"  # espirit | walsh
    calibration: str = "auto"  # auto (reference buffer if sent, else in-line ACS) | reference | data
    retrospective_acceleration: int = 0  # > 1: undersample fully sampled data (equispaced + ACS)
    num_acs: int = 24  # ACS lines kept by retrospective undersampling
    require_complete_slices: bool = True  # a slice without ACQ_LAST_IN_SLICE is an error

    @classmethod
    def from_config(cls, config) -> "CoilSensitivitySettings":
        props = properties(config)
        _check_names("gadgets.coil_sensitivity", props)
        d = cls()
        return cls(
            method=_choice("method", props.get("method", d.method), ("espirit", "walsh")),
            calibration=_choice("calibration", props.get("calibration", d.calibration), ("auto", "reference", "data")),
            retrospective_acceleration=_number(int, "retrospective_acceleration",
                                               props.get("retrospective_acceleration", "0") or "0", 0),
            num_acs=_number(int, "num_acs", props.get("num_acs", str(d.num_acs)), 2),
            require_complete_slices=_bool("require_complete_slices",
                                          props.get("require_complete_slices", "true")),
        )


RECON_METHODS = ("dps", "cg_sense", "cs", "zero_filled")  # as models.reconstruction.METHODS (no torch import here)
SAMPLERS = ("dps", "dds")  # as models.reconstruction.SAMPLERS
SHIPPED = "shipped"


@dataclass(frozen=True)
class DpsReconSettings:
    """Properties of ``gadgets.dps_recon``.

    ``acceleration`` is ``"header"`` (read the header's parallelImaging factor) or a
    number; ``zeta`` is ``"auto"`` (the per-R table of :mod:`models.sampler.zeta`) or a
    number; ``checkpoint`` is ``"shipped"`` (the prior in ``models/weights/``) or a path.
    """

    method: str = "dps"
    checkpoint: str = SHIPPED
    contrast: str = "FLAIR"
    acceleration: Union[str, float] = "header"
    zeta: Union[str, float] = "auto"
    num_steps: int = 20  # as models.sampler.zeta.DEFAULT_STEPS (no torch import here)
    num_samples: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_slices: Union[str, int] = "auto"  # auto: all slices of the scan on a GPU, 1 on the CPU
    output_std: bool = True  # send the posterior std series when num_samples > 1
    ushort: bool = False  # magnitude as uint16 scaled for DICOM (else float32)
    series_index: int = 1  # magnitude series; the std series is series_index + 1
    cg_iterations: int = 20
    # k-space noise variance E|n|^2: "auto" (prewhitened convention, or estimated when the data disagree:
    # models.mri.noise), "none" (CG-SENSE stops after cg_iterations, unregularised) or a number
    noise_variance: Union[str, float] = "auto"
    sampler: str = "dds"  # "dds" (noise-weighted CG data consistency per step) or "dps" (the paper's step)
    dds_cg_iterations: int = 10  # CG iterations per DDS step
    sigma_start: Union[str, float] = "none"  # DDS warm start from CG-SENSE at this noise level, or "none"
    final_cg_iterations: int = 0  # CG-SENSE polish after the prior's image (0 = off)

    @classmethod
    def from_config(cls, config) -> "DpsReconSettings":
        props = properties(config)
        _check_names("gadgets.dps_recon", props)
        d = cls()
        acceleration = props.get("acceleration", "header") or "header"
        if acceleration != "header":
            acceleration = _number(float, "acceleration", acceleration, 1.0)
        zeta = props.get("zeta", "auto") or "auto"
        if zeta != "auto":
            zeta = _number(float, "zeta", zeta, 0.0)
        batch = props.get("batch_slices", "auto") or "auto"
        if batch != "auto":
            batch = _number(int, "batch_slices", batch, 1)
        device = props.get("device", "auto") or "auto"
        if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
            raise ChainConfigError(f"property 'device': {device!r} is not auto, cpu, cuda or cuda:N")
        noise = (props.get("noise_variance", "auto") or "auto").strip().lower()
        if noise not in ("auto", "none"):
            noise = _number(float, "noise_variance", noise, 0.0)
            if not noise > 0:
                raise ChainConfigError("property 'noise_variance': must be > 0, auto or none")
        sigma_start = (props.get("sigma_start", "none") or "none").strip().lower()
        if sigma_start != "none":
            sigma_start = _number(float, "sigma_start", sigma_start, 0.0)
            if not sigma_start > 0:
                raise ChainConfigError("property 'sigma_start': must be > 0 or none")
        contrast = props.get("contrast", d.contrast)
        if not contrast:
            raise ChainConfigError("property 'contrast' is empty")
        return cls(
            method=_choice("method", props.get("method", d.method), RECON_METHODS),
            checkpoint=props.get("checkpoint", SHIPPED) or SHIPPED,
            contrast=contrast,
            acceleration=acceleration,
            zeta=zeta,
            num_steps=_number(int, "num_steps", props.get("num_steps", str(d.num_steps)), 1),
            num_samples=_number(int, "num_samples", props.get("num_samples", str(d.num_samples)), 1),
            seed=_number(int, "seed", props.get("seed", str(d.seed)), 0),
            device=device,
            batch_slices=batch,
            output_std=_bool("output_std", props.get("output_std", "true")),
            ushort=_bool("ushort", props.get("ushort", "false")),
            series_index=_number(int, "series_index", props.get("series_index", str(d.series_index)), 0),
            cg_iterations=_number(int, "cg_iterations", props.get("cg_iterations", str(d.cg_iterations)), 1),
            noise_variance=noise,
            sampler=_choice("sampler", props.get("sampler", d.sampler), SAMPLERS),
            dds_cg_iterations=_number(int, "dds_cg_iterations",
                                      props.get("dds_cg_iterations", str(d.dds_cg_iterations)), 1),
            sigma_start=sigma_start,
            final_cg_iterations=_number(int, "final_cg_iterations",
                                        props.get("final_cg_iterations", str(d.final_cg_iterations)), 0),
        )

    def checkpoint_path(self, weights_dir: Optional[Path] = None) -> Path:
        """The checkpoint file this chain names (``shipped`` resolves in ``models/weights/``)."""
        from models.prior.shipped import shipped_checkpoint  # avoids importing torch at parse time

        if self.checkpoint == SHIPPED:
            return shipped_checkpoint(weights_dir)
        return Path(self.checkpoint).expanduser()


#: Properties each of our gadgets reads (module name as in ``<execute name=..>``).
PROPERTIES = {
    "gadgets.coil_sensitivity": tuple(f.name for f in fields(CoilSensitivitySettings)),
    "gadgets.dps_recon": tuple(f.name for f in fields(DpsReconSettings)),
}
