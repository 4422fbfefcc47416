"""The OpenRecon metadata label of the MRD App image, from one source of truth.

Siemens OpenRecon reads an MRD App's description from the image label
``com.siemens-healthineers.magneticresonance.openrecon.metadata:1.1.0``: base64 of a
JSON document with ``general`` (name, version, vendor, information), ``reconstruction``
(transfer protocol ISMRMRD, port, what it takes and gives, GPU needs) and
``parameters`` (what the scanner UI shows). :func:`metadata` builds it from the code:
the chains in ``config_xml/``, the properties the MRD server lets a client set
(:data:`gadgets.mrd_server.OVERRIDABLE`) with the defaults of
:class:`models.recon_settings.ReconSettings` and the zeta table. ``python
docker/openrecon.py --write`` rewrites the ``LABEL`` line of ``docker/Dockerfile.mrd``;
``tests/test_docker.py`` fails when the two disagree.
"""

import argparse
import base64
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile.mrd"
LABEL_KEY = "com.siemens-healthineers.magneticresonance.openrecon.metadata:1.1.0"
PORT = 9002


def _en(text: str) -> dict:
    return {"en": text}


def metadata() -> dict:
    sys.path.insert(0, str(ROOT))
    from gadgets.mrd_server import CHAINS, OVERRIDABLE
    from gadgets.settings import DpsReconSettings
    from models.recon_settings import METHODS, SAMPLERS
    from models.sampler.zeta import ZETA_DDS_BY_ACCELERATION

    settings = DpsReconSettings()
    defaults = settings.recon
    chains = sorted(p.stem for p in CHAINS.glob("*.xml") if not p.stem.endswith("_connect"))
    version = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    parameters = [
        {"id": "config", "label": _en("Reconstruction"), "type": "choice", "default": "dps_r4",
         "values": [{"id": c, "name": _en(c)} for c in chains],
         "information": _en("chain of config_xml/: dps_rR = DPS for acceleration R (zeta and steps per R); "
                            "reference_fully_sampled = CG-SENSE without the prior")},
        {"id": "method", "label": _en("Method"), "type": "choice", "default": defaults.method,
         "values": [{"id": m, "name": _en(m)} for m in METHODS],
         "information": _en("dps: diffusion prior; cg_sense / cs / zero_filled: classical reconstructions")},
        {"id": "sampler", "label": _en("Sampler"), "type": "choice", "default": defaults.sampler,
         "values": [{"id": v, "name": _en(v)} for v in SAMPLERS],
         "information": _en("dds: noise-weighted CG data consistency per step (fast); dps: the paper's "
                            "gradient step (better at R 5-6 at moderate SNR, 7x slower)")},
        {"id": "zeta", "label": _en("Data-consistency weight zeta"), "type": "string", "default": "auto" if defaults.zeta is None else defaults.zeta,
         "information": _en("likelihood weight in units of the scan's measured noise (1 = Bayes' rule); "
                            "a number, or auto: the per-R table " + ", ".join(
             f"R {r:g}: {z:g}" for r, z in sorted(ZETA_DDS_BY_ACCELERATION.items())))},
        {"id": "num_steps", "label": _en("Sampler steps"), "type": "int", "default": defaults.num_steps,
         "min": 1, "max": 500, "information": _en("probability-flow ODE steps of the prior")},
        {"id": "num_samples", "label": _en("Posterior samples"), "type": "int", "default": defaults.num_samples,
         "min": 1, "max": 16, "information": _en("> 1: the image is their mean, and a std series is sent")},
        {"id": "output_std", "label": _en("Send the uncertainty series"), "type": "boolean",
         "default": settings.output_std, "information": _en("posterior std per pixel when num_samples > 1")},
    ]
    assert {p["id"] for p in parameters} - {"config"} == set(OVERRIDABLE), "parameters and OVERRIDABLE disagree"
    return {
        "general": {
            "name": _en("dps-gadgetron"),
            "version": version,
            "vendor": "dps-gadgetron",
            "information": _en("Diffusion Posterior Sampling reconstruction of accelerated brain / stroke FLAIR "
                               "with a contrast-conditioned EDM prior (research use)"),
            "id": "dps-gadgetron",
        },
        "reconstruction": {
            "transfer_protocol": {"protocol": "ISMRMRD", "version": "1.4"},
            "port": PORT,
            "emitter": "raw",
            "injector": "image",
            "can_process_adjustment_data": False,
            "can_use_gpu": True,
            "min_count_required_gpus": 0,
            "min_required_gpu_memory": 2048,
            "min_required_memory": 4096,
            "min_count_required_cpu_cores": 2,
            "content_qualification_type": "RESEARCH",
        },
        "parameters": parameters,
    }


def label_value() -> str:
    return base64.b64encode(json.dumps(metadata(), indent=1, sort_keys=True).encode("utf-8")).decode("ascii")


def label_line() -> str:
    return f'LABEL "{LABEL_KEY}"="{label_value()}"'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the LABEL line of {DOCKERFILE.name}")
    args = parser.parse_args(argv)
    if not args.write:
        print(json.dumps(metadata(), indent=2))
        return 0
    text = DOCKERFILE.read_text()
    new, count = re.subn(r'^LABEL "' + re.escape(LABEL_KEY) + r'"=.*$', lambda _: label_line(), text, flags=re.M)
    if count != 1:
        raise SystemExit(f"{DOCKERFILE}: expected one LABEL line for {LABEL_KEY}, found {count}")
    DOCKERFILE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
