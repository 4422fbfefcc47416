"""docker/Dockerfile: what it copies exists; the chains it registers are config_xml/'s."""

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
