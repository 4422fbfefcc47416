"""MR contrasts from tissue fractions through signal equations.

Tissue relaxation at 3 T (ms) and relative proton density (water content):

* GM / WM: T1 1820 / 1084, T2 99 / 69 (Stanisz et al., MRM 54:507, 2005);
  Wansapura et al. (JMRI 9:531, 1999) report shorter T1 (1331 / 832) and
  T2 110 / 80; the per-subject perturbation spans the spread collected by
  Bojorquez et al. (MRI 35:69, 2017).
* CSF: T1 4300, T2 2000 (3 T ranges in Bojorquez et al. 2017).
* Subcutaneous fat: T1 371, T2 133; skeletal muscle: T1 1412, T2 50
  (Gold et al., AJR 183:343, 2004).
* PD: WM 0.69, GM 0.80, CSF 1.00, fat 0.90, muscle 0.70 (water content as in
  Tofts, *Quantitative MRI of the Brain*, 2003; fat's is an apparent value).
* Stroke lesion (vasogenic oedema of a subacute infarct): T1 1800-2600,
  T2 140-250 (quantitative T2 of infarcts rises to ~1.5-2.5x normal tissue,
  Siemonsen et al., Stroke 40:1612, 2009), PD 0.82-0.92.
* Gadolinium: 1/T1 gains r1 * C with r1 = 3.5 /mM/s (gadoterate at 3 T,
  Rohrer et al., Invest Radiol 40:715, 2005); C up to ~1 mM in enhancing
  structures (dura, venous sinuses, choroid plexus), lower in muscle.

Signal equations (magnitude, TR >> TE, no T2* for spin echoes):

* spin echo: ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``
* FLAIR (inversion recovery spin echo):
  ``S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``, CSF nulled when
  ``TI ~ T1_csf ln(2 / (1 + exp(-TR/T1_csf)))`` (~2500 ms at TR 9000).

A voxel's signal is the fraction-weighted sum of its tissues' signals (slow
exchange partial volume model).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from models.data.segmentation import TISSUES
from models.errors import DataSourceError

CONTRASTS: tuple[str, ...] = ("T1", "T2", "PD", "T1post", "FLAIR")
#: Default target contrast of the method (fine-tuning / test).
TARGET_CONTRAST = "FLAIR"

#: Mean (T1 ms, T2 ms, PD) per tissue at 3 T, see module docstring.
TISSUE_PARAMETERS: dict[str, tuple[float, float, float]] = {
    "background": (1000.0, 1.0, 0.0),  # air and cortical bone: no signal
    "csf": (4300.0, 2000.0, 1.00),
    "gm": (1820.0, 99.0, 0.80),
    "wm": (1084.0, 69.0, 0.69),
    "fat": (371.0, 133.0, 0.90),
    "muscle": (1412.0, 50.0, 0.70),
}
#: Ranges (low, high) of the stroke-lesion parameters, drawn per subject.
LESION_RANGES = {"t1": (1800.0, 2600.0), "t2": (140.0, 250.0), "pd": (0.82, 0.92)}
#: Gadolinium relaxivity r1 at 3 T in 1/(mM s) (Rohrer et al. 2005).
R1_GD = 3.5

#: Sequence parameter ranges (ms), drawn uniformly per subject and contrast.
SEQUENCE_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "T1": {"tr": (400.0, 700.0), "te": (8.0, 15.0)},
    "T1post": {"tr": (400.0, 700.0), "te": (8.0, 15.0), "dose_mM": (0.6, 1.2)},
    "T2": {"tr": (3000.0, 6000.0), "te": (80.0, 110.0)},
    "PD": {"tr": (2500.0, 4000.0), "te": (8.0, 20.0)},
    # TI is set as the protocol does: the CSF null time for the drawn TR (nominal CSF
    # T1), plus a jitter; about 2350-2600 ms over this TR range.
    "FLAIR": {"tr": (8000.0, 10000.0), "te": (100.0, 140.0), "ti_jitter": (-100.0, 100.0)},
}


class TissueDraw(NamedTuple):
    """One subject's relaxation parameters: arrays ``[T]`` in :data:`TISSUES` order plus lesion."""

    t1: np.ndarray
    t2: np.ndarray
    pd: np.ndarray
    lesion: tuple[float, float, float]  # (T1 ms, T2 ms, PD)


def draw_tissue_parameters(rng: np.random.Generator, spread: float = 0.08) -> TissueDraw:
    """Per-subject tissue parameters: literature means times log-normal factors.

    Each of T1, T2, PD gets one factor shared by all tissues (log-sd ``spread``,
    like a scanner or age effect) times a per-tissue factor (log-sd ``spread / 2``,
    clipped at 2 sd), so tissue contrasts keep their sign. PD varies half as much.

    Args:
        rng: seeded generator.
        spread: standard deviation of the shared log factor (0.08 = about +-8 %).
    """
    base = np.array([TISSUE_PARAMETERS[t] for t in TISSUES], dtype=np.float64)
    shared = rng.normal(0.0, spread, size=(1, 3))
    own = np.clip(rng.normal(0.0, spread / 2, size=base.shape), -spread, spread)
    f = np.exp(shared + own)
    f[:, 2] = np.sqrt(f[:, 2])  # PD varies less
    p = base * f
    p[:, 2] = np.clip(p[:, 2], 0.0, 1.0)
    lesion = tuple(float(rng.uniform(*LESION_RANGES[k])) for k in ("t1", "t2", "pd"))
    return TissueDraw(p[:, 0], p[:, 1], p[:, 2], lesion)  # type: ignore[arg-type]


def draw_sequence(contrast: str, rng: np.random.Generator) -> dict[str, float]:
    """Sequence parameters (ms; ``dose_mM`` for T1post) drawn in :data:`SEQUENCE_RANGES`."""
    if contrast not in SEQUENCE_RANGES:
        raise DataSourceError(f"unknown contrast {contrast!r}; known: {CONTRASTS}")
    seq = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in SEQUENCE_RANGES[contrast].items()}
    if contrast == "FLAIR":
        seq["ti"] = csf_null_ti(TISSUE_PARAMETERS["csf"][0], seq["tr"]) + seq.pop("ti_jitter")
    return seq


def spin_echo(pd, t1, t2, tr: float, te: float):
    """Spin-echo magnitude ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (times in ms, broadcasts)."""
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def inversion_recovery(pd, t1, t2, tr: float, te: float, ti: float):
    """IR spin-echo magnitude ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)`` (ms)."""
    return pd * np.abs(1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def csf_null_ti(t1_csf: float, tr: float) -> float:
    """Inversion time (ms) that nulls a tissue of longitudinal relaxation ``t1_csf`` at ``tr``."""
    return float(t1_csf * np.log(2.0 / (1.0 + np.exp(-tr / t1_csf))))


def tissue_signal(contrast: str, t1, t2, pd, seq: Mapping[str, float], gd_mM=0.0):
    """Signal of tissues with parameters (t1, t2, pd) under one contrast's sequence.

    Args:
        contrast: one of :data:`CONTRASTS`.
        t1, t2, pd: arrays (ms, ms, a.u.) that broadcast together.
        seq: sequence parameters from :func:`draw_sequence`.
        gd_mM: gadolinium concentration (mM), used by ``T1post`` only.
    """
    if contrast in ("T1", "T2", "PD"):
        return spin_echo(pd, t1, t2, seq["tr"], seq["te"])
    if contrast == "T1post":
        t1_gd = 1.0 / (1.0 / t1 + R1_GD * 1e-3 * np.asarray(gd_mM))
        return spin_echo(pd, t1_gd, t2, seq["tr"], seq["te"])
    if contrast == "FLAIR":
        return inversion_recovery(pd, t1, t2, seq["tr"], seq["te"], seq["ti"])
    raise DataSourceError(f"unknown contrast {contrast!r}; known: {CONTRASTS}")


def synthesize(contrast: str, fractions: np.ndarray, tissues: TissueDraw, seq: Mapping[str, float],
               lesion: np.ndarray | None = None, enhancing: np.ndarray | None = None) -> np.ndarray:
    """Magnitude image of one contrast from partial-volume tissue fractions.

    Args:
        contrast: one of :data:`CONTRASTS`.
        fractions: float ``[T, *S]`` in :data:`TISSUES` order, summing to 1.
        tissues: the subject's parameter draw.
        seq: sequence parameters.
        lesion: optional lesion fraction ``[*S]`` in [0, 1]; it replaces GM and WM in
            proportion (never CSF or extracranial tissue).
        enhancing: optional weight ``[*S]`` in [0, 1] of gadolinium uptake
            (scaled by ``seq["dose_mM"]``; T1post only). Muscle takes up 15 % of the dose.
    Returns:
        float32 ``[*S]`` signal (arbitrary units, PD = 1 for pure water at full recovery).
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape[0] != len(TISSUES):
        raise DataSourceError(f"fractions must be [{len(TISSUES)}, ...], got {fr.shape}")
    shape = fr.shape[1:]
    extra = (1,) * len(shape)
    gd = np.zeros((len(TISSUES),) + shape)
    if contrast == "T1post":
        dose = seq.get("dose_mM", 1.0)
        if enhancing is not None:
            gd += dose * np.asarray(enhancing)[None]
        gd[TISSUES.index("muscle")] += 0.15 * dose
    s_t = tissue_signal(contrast, tissues.t1.reshape(-1, *extra), tissues.t2.reshape(-1, *extra),
                        tissues.pd.reshape(-1, *extra), seq, gd)
    if lesion is not None:
        lf = np.clip(np.asarray(lesion, dtype=np.float64), 0.0, 1.0)
        brain_idx = [TISSUES.index(t) for t in ("gm", "wm")]
        brain = fr[brain_idx].sum(0)
        lf = np.minimum(lf, brain)
        scale = np.where(brain > 0, 1.0 - lf / np.maximum(brain, 1e-12), 1.0)
        fr = fr.copy()
        fr[brain_idx] *= scale[None]
        l1, l2, lpd = tissues.lesion
        s_les = tissue_signal(contrast, l1, l2, lpd, seq, 0.0)
        return (np.sum(fr * s_t, axis=0) + lf * s_les).astype(np.float32)
    return np.sum(fr * s_t, axis=0).astype(np.float32)
