"""Schema test of every chain in config_xml/ and the chain parser's errors."""

from pathlib import Path

import pytest

from gadgets.chain import ExternalNode, GadgetNode, parse_chain, validate
from gadgets.errors import ChainConfigError
from gadgets.settings import PROPERTIES, CoilSensitivitySettings, DpsReconSettings
from gadgets.standard import GADGETRON_DLL, TWINS
from models.sampler.zeta import default_zeta

CHAINS = sorted((Path(__file__).resolve().parents[1] / "config_xml").glob("*.xml"))
SETTINGS = {"gadgets.coil_sensitivity": CoilSensitivitySettings, "gadgets.dps_recon": DpsReconSettings}


def test_the_product_chains_exist():
    names = {p.name for p in CHAINS}
    for r in (2, 4, 5, 6):
        assert {f"dps_r{r}.xml", f"dps_r{r}_connect.xml"} <= names
    assert "reference_fully_sampled.xml" in names


@pytest.mark.parametrize("path", CHAINS, ids=lambda p: p.name)
def test_chain_schema(path):
    chain = parse_chain(path)
    validate(chain)  # gadget names have twins, targets import, property names are known
    assert "AcquisitionReader" in chain.readers and "ImageWriter" in chain.writers
    gadgets = [n for n in chain.nodes if isinstance(n, GadgetNode)]
    assert [g.classname for g in gadgets] == ["NoiseAdjustGadget", "AsymmetricEchoAdjustROGadget",
                                              "RemoveROOversamplingGadget", "AcquisitionAccumulateTriggerGadget",
                                              "BucketToBufferGadget"]
    buffer = gadgets[-1].properties
    assert buffer["N_dimension"] == "average"  # averages of a line are combined, not separate images
    assert all(g.classname in TWINS and g.dll == GADGETRON_DLL for g in gadgets)
    externals = [n for n in chain.nodes if isinstance(n, ExternalNode)]
    assert len(externals) == 2 and externals[0].module == "gadgets.coil_sensitivity"
    for node in externals:
        module = node.module or "gadgets.dps_recon"
        assert set(node.properties) <= set(PROPERTIES[module])
        SETTINGS[module].from_config(node.configuration)  # every value parses
    dps = externals[1]
    if path.name.endswith("_connect.xml"):
        assert dps.module is None and dps.port == 9003 and dps.address == "localhost"
    else:
        assert (dps.module, dps.target) == ("gadgets.dps_recon", "dps_recon")


def test_chains_take_zeta_from_the_table_of_their_sampler():
    """A chain that wrote a number would silently disagree with a re-tuned table: the chains say auto."""
    from models.reconstruction import ReconSettings
    from models.sampler.zeta import DEFAULT_STEPS, ZETA_BY_ACCELERATION

    for r in (2, 4, 5, 6):
        chain = DpsReconSettings.from_config(parse_chain(CHAINS[0].parent / f"dps_r{r}.xml").nodes[-1].configuration)
        settings = chain.recon
        assert settings.method == "dps" and settings.acceleration == r and chain.checkpoint == "shipped"
        assert settings.zeta is None, f"dps_r{r}.xml sets zeta={settings.zeta}: say auto (models/sampler/zeta.py)"
        assert settings.sampler == "dds" and settings.num_steps == DEFAULT_STEPS
        assert ReconSettings(acceleration=r).resolved_zeta() == default_zeta(r, sampler="dds")
    # the paper's DPS step pulls harder at higher R (its zeta is a step length, not a likelihood weight)
    dps = [ZETA_BY_ACCELERATION[r] for r in sorted(ZETA_BY_ACCELERATION)]
    assert dps == sorted(dps) and dps[0] < dps[-1]


def test_connect_variants_match_execute_chains():
    for r in (2, 4, 5, 6):
        a = parse_chain(CHAINS[0].parent / f"dps_r{r}.xml").nodes[-1].properties
        b = parse_chain(CHAINS[0].parent / f"dps_r{r}_connect.xml").nodes[-1].properties
        assert a == b


BASE = """<configuration><version>2</version><stream>{}</stream></configuration>"""


@pytest.mark.parametrize("body, word", [
    ("<gadget><classname>MagicGadget</classname></gadget>", "MagicGadget"),
    ('<external><execute name="gadgets.dps_recon" target="dps_recon" type="matlab"/><configuration/></external>',
     "python"),
    ('<external><execute name="gadgets.dps_recon" target="dps_recon" type="python"/></external>', "configuration"),
    ('<external><execute name="gadgets.nothing" target="x" type="python"/><configuration/></external>', "import"),
    ('<external><execute name="gadgets.dps_recon" target="nope" type="python"/><configuration/></external>', "nope"),
    ('<external><execute name="gadgets.dps_recon" target="dps_recon" type="python"/><configuration>'
     '<property name="zetta" value="1"/></configuration></external>', "zetta"),
    ('<external><execute name="gadgets.dps_recon" target="dps_recon" type="python"/><configuration>'
     '<property name="num_steps" value="-3"/></configuration></external>', "num_steps: must be >= 1"),
])
def test_bad_chains_are_rejected(body, word):
    with pytest.raises(ChainConfigError, match=word):
        validate(parse_chain(BASE.format(body)))


def test_not_a_chain():
    with pytest.raises(ChainConfigError):
        parse_chain("<gadgetronStreamConfiguration/>")
    with pytest.raises(ChainConfigError, match="does not exist"):
        parse_chain(Path("/nonexistent/chain.xml"))
