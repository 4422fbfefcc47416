"""Typed settings of our gadgets, parsed once from the chain's ``<configuration>``.

Gadgetron sends an external node the ``<configuration>`` element of its
``<external>`` block; gadgetron-python parses it into an ElementTree element
(``connection.config``), ``None`` when the element was missing. Every property
arrives as a string. :func:`properties` turns any of these (element, XML text,
dict, ``None``) into a ``{name: value}`` dict; the ``*Settings.from_config``
constructors parse and validate them with the fields' schema
(:mod:`models.settings_schema`) and raise :class:`ChainConfigError` naming the
property, so a typo in a chain fails at the start of a scan, not in the middle of one.

``gadgets.dps_recon`` reads the ``chain`` fields of
:class:`models.recon_settings.ReconSettings` (method, zeta, steps ...: the one schema
of a reconstruction) and the few properties only a gadget has (checkpoint, device,
batching, output). :data:`PROPERTIES` lists the properties each gadget reads (the
schema test of ``config_xml/`` checks chains against it); :func:`property_help`
prints them for ``--help`` and ``docs/cli-help.txt``.
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from models.errors import SettingsError
from models.recon_settings import ReconSettings
from models.settings_schema import describe, parse_properties, schema_fields, setting

from gadgets.errors import ChainConfigError


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


def _check_names(gadget: str, props: Dict[str, str]):
    unknown = sorted(set(props) - set(PROPERTIES[gadget]))
    if unknown:
        raise ChainConfigError(f"{gadget}: unknown properties {unknown}; known: {sorted(PROPERTIES[gadget])}")


def _parse(gadget: str, cls, props: Dict[str, str]) -> dict:
    try:
        return parse_properties(cls, props)
    except SettingsError as exc:
        raise ChainConfigError(f"{gadget} property {exc}") from None


@dataclass(frozen=True)
class CoilSensitivitySettings:
    """Properties of ``gadgets.coil_sensitivity``."""

    method: str = setting("espirit", "coil-map estimator", choices=("espirit", "walsh"))
    calibration: str = setting("auto", "lines the maps come from: auto (the reference buffer if sent, else the "
                               "in-line ACS), reference or data", choices=("auto", "reference", "data"))
    retrospective_acceleration: int = setting(0, "> 1: undersample fully sampled data (equispaced + ACS)",
                                              minimum=0)
    num_acs: int = setting(24, "ACS lines kept by retrospective undersampling", minimum=2)
    require_complete_slices: bool = setting(True, "a slice without ACQ_LAST_IN_SLICE is an error")

    @classmethod
    def from_config(cls, config) -> "CoilSensitivitySettings":
        props = properties(config)
        _check_names("gadgets.coil_sensitivity", props)
        return cls(**_parse("gadgets.coil_sensitivity", cls, props))


SHIPPED = "shipped"


@dataclass(frozen=True)
class DpsReconSettings:
    """Properties of ``gadgets.dps_recon``: ``recon`` (the chain fields of
    :class:`ReconSettings`, as the chain wrote them; ``acceleration`` ``None`` means the
    header's) and what only the gadget knows."""

    recon: ReconSettings = field(default_factory=ReconSettings)
    checkpoint: str = setting(SHIPPED, "shipped: the prior in models/weights/; or a checkpoint path")
    device: str = setting("auto", "where the prior runs", pattern=r"auto|cpu|cuda|cuda:\d+",
                          pattern_text="auto | cpu | cuda | cuda:N")
    batch_slices: Optional[int] = setting(None, "slices reconstructed together; auto: all of the scan on a GPU, "
                                          "1 on the CPU", kind=int, minimum=1, word="auto")
    output_std: bool = setting(True, "send the posterior std series when num_samples > 1")
    ushort: bool = setting(False, "magnitude as uint16 scaled for DICOM (else float32)")
    series_index: int = setting(1, "series of the magnitude images; the std series is series_index + 1",
                                minimum=0)
    noise_variance: Optional[float] = setting(
        None, "k-space noise variance per raw sample: auto (the prewhitened convention, or estimated when the "
        "data disagree: models/mri/noise.py), none (CG-SENSE unregularised, DDS estimates it per slice), "
        "or a number", kind=float, positive=True, words={"auto": None, "none": "none"})

    @classmethod
    def from_config(cls, config) -> "DpsReconSettings":
        props = properties(config)
        _check_names("gadgets.dps_recon", props)
        recon = ReconSettings(**_parse("gadgets.dps_recon", ReconSettings, props))
        return cls(recon=recon, **_parse("gadgets.dps_recon", cls, props))

    def checkpoint_path(self, weights_dir: Optional[Path] = None) -> Path:
        """The checkpoint file this chain names (``shipped`` resolves in ``models/weights/``)."""
        from models.prior.shipped import shipped_checkpoint  # avoids importing torch at parse time

        if self.checkpoint == SHIPPED:
            return shipped_checkpoint(weights_dir)
        return Path(self.checkpoint).expanduser()


#: The settings classes of our gadgets' properties; the last one's ``from_config`` parses the whole configuration.
SCHEMAS = {
    "gadgets.coil_sensitivity": (CoilSensitivitySettings,),
    "gadgets.dps_recon": (ReconSettings, DpsReconSettings),
}

#: Properties each of our gadgets reads (module name as in ``<execute name=..>``).
PROPERTIES = {gadget: tuple(f.name for cls in classes for f in schema_fields(cls, chain_only=True))
              for gadget, classes in SCHEMAS.items()}
assert all(len(set(names)) == len(names) for names in PROPERTIES.values()), "a property is declared twice"


def parse_gadget_properties(gadget: str, config):
    """The settings object of one of our gadgets from its configuration (names and values checked)."""
    return SCHEMAS[gadget][-1].from_config(config)


def property_help() -> List[str]:
    """``<gadget>`` then one ``  name = default (allowed): doc`` line per property, for ``--help``."""
    lines = []
    for gadget, classes in SCHEMAS.items():
        lines.append(gadget)
        lines += ["  " + line for cls in classes for line in describe(cls)]
    return lines
