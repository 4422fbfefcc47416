"""docker/Dockerfile: what it copies exists; the chains it registers are config_xml/'s."""

import base64
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()


def test_every_copied_path_exists():
    copies = re.findall(r"^COPY\s+(.+)$", DOCKERFILE, flags=re.M)
    assert copies
    for line in copies:
        sources = line.split()[:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_registered_chains_are_config_xml():
    assert re.search(r"cp config_xml/\*\.xml", DOCKERFILE)
    assert "COPY config_xml ./config_xml" in DOCKERFILE
    readme = (ROOT / "docker" / "README.md").read_text()
    named = set(re.findall(r"`([a-z0-9_]+\.xml)`", readme))
    available = {p.name for p in (ROOT / "config_xml").glob("*.xml")}
    assert {"dps_r4.xml", "reference_fully_sampled.xml"} <= named <= available


def test_image_imports_our_gadgets_and_builds_on_gadgetron():
    assert re.search(r"^FROM\s+\S*gadgetron", DOCKERFILE, flags=re.M)
    assert "import gadgets.dps_recon, gadgets.coil_sensitivity" in DOCKERFILE
    assert "--gpus all" in (ROOT / "docker" / "README.md").read_text()


MRD_DOCKERFILE = (ROOT / "docker" / "Dockerfile.mrd").read_text()


def _openrecon():
    import importlib.util

    spec = importlib.util.spec_from_file_location("openrecon", ROOT / "docker" / "openrecon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mrd_app_image_serves_on_9002_and_copies_what_exists():
    cmd = re.search(r"^CMD\s+(\[.*\])$", MRD_DOCKERFILE, flags=re.M)
    assert cmd, "Dockerfile.mrd has no exec-form CMD"
    argv = json.loads(cmd.group(1))
    assert argv[:2] == ["dps-gadgetron", "mrd-serve"]
    assert argv[argv.index("--port") + 1] == "9002" and argv[argv.index("--host") + 1] == "0.0.0.0"
    assert re.search(r"^EXPOSE 9002$", MRD_DOCKERFILE, flags=re.M)
    for line in re.findall(r"^COPY\s+(.+)$", MRD_DOCKERFILE, flags=re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile.mrd copies {source}, which does not exist"


def test_openrecon_label_is_the_generated_one_and_names_what_the_server_accepts():
    openrecon = _openrecon()
    found = re.findall(r'^LABEL "' + re.escape(openrecon.LABEL_KEY) + r'"="([^"]+)"$', MRD_DOCKERFILE, flags=re.M)
    assert len(found) == 1, "Dockerfile.mrd needs exactly one OpenRecon label"
    label = json.loads(base64.b64decode(found[0]))
    assert label == openrecon.metadata(), "the label is stale: run python docker/openrecon.py --write"
    assert set(label) == {"general", "reconstruction", "parameters"}
    recon = label["reconstruction"]
    assert recon["transfer_protocol"]["protocol"] == "ISMRMRD" and recon["port"] == 9002
    assert (recon["emitter"], recon["injector"]) == ("raw", "image") and "can_use_gpu" in recon
    from gadgets.mrd_server import OVERRIDABLE, chain_path

    ids = {p["id"] for p in label["parameters"]}
    assert ids == set(OVERRIDABLE) | {"config"}
    for choice in next(p for p in label["parameters"] if p["id"] == "config")["values"]:
        chain_path(choice["id"])  # every offered chain is one the server runs
    zeta = next(p for p in label["parameters"] if p["id"] == "zeta")
    assert zeta["default"] == "auto"
