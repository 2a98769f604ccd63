"""Licence and label-mapping facts of every seed source, keyed by adapter name (and by hub id for
datasets read through a generic adapter), and how they propagate to a corpus built from them.

Kept here rather than in the adapters so the audit reads one table; ``licence_of`` is the only lookup.
Licences are the ones the datasets' hub pages state (see /shared/sources.md); ``None`` = no licence stated,
which the dataset card flags.
"""

from __future__ import annotations

from dataclasses import dataclass

NON_COMMERCIAL = {"cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0"}


@dataclass(frozen=True)
class SourceLicence:
    licence: str | None  # SPDX-style lower-case id as the Hugging Face card header spells it, or None
    hub: str | None  # the dataset's hub id
    mapping: str  # how its labels become request/response labels
    unverified: bool = False  # the mapping is an assumption not confirmed by a primary source
    note: str = ""


BY_ADAPTER: dict[str, SourceLicence] = {
    "wildguardmix": SourceLicence("odc-by", "allenai/wildguardmix", "prompt_harm_label / response_refusal_label / "
                                  "response_harm_label as given (None = annotators disagreed)"),
    "aegis1": SourceLicence("cc-by-4.0", "nvidia/Aegis-AI-Content-Safety-Dataset-1.0",
                            "majority of labels_0..n: Safe -> unharmful, anything else -> harmful"),
    "aegis2": SourceLicence("cc-by-4.0", "nvidia/Aegis-AI-Content-Safety-Dataset-2.0",
                            "prompt_label/response_label: unsafe -> harmful, safe -> unharmful", unverified=True),
    "beavertails": SourceLicence("cc-by-nc-4.0", "PKU-Alignment/BeaverTails",
                                 "is_safe -> response label; request label left to the teacher"),
    "toxicchat": SourceLicence("cc-by-nc-4.0", "lmsys/toxic-chat",
                               "human-annotated rows only; toxicity 1 -> harmful request"),
    "unsafebench": SourceLicence(None, "yiting/UnsafeBench", "safety_label Unsafe -> harmful, Safe -> unharmful",
                                 note="gated, research use only; no licence stated"),
    "vlguard": SourceLicence("mit", "ys-zong/VLGuard", "safe False -> harmful image request",
                             unverified=True,
                             note="VLGuard's processed copies; the original image sets keep their own terms"),
    "hod": SourceLicence(None, "poori-nuna/HOD-Benchmark-Dataset", "every image labelled by option `label` "
                         "(default harmful)", unverified=True, note="no licence stated"),
    "spavl": SourceLicence("cc-by-4.0", "sqrti/SPA-VL", "question harmful (option); chosen -> unharmful, "
                           "rejected -> harmful response (options)", unverified=True),
    "guardreasoner": SourceLicence(None, "yueliu1999/GuardReasonerTrain", "labels of the original sources",
                                   note="mixes WildGuard, Aegis, BeaverTails and ToxicChat rows; the NC terms of "
                                   "BeaverTails and ToxicChat apply"),
    "guardreasoner_vl": SourceLicence(None, "yueliu1999/GuardReasoner-VLTrain", "labels as released",
                                      note="derived from NC sources (BeaverTails, ToxicChat)"),
}

#: datasets read through a generic adapter (``declarative``, ...) are looked up by their hub id
BY_HUB: dict[str, SourceLicence] = {
    "PKU-Alignment/PKU-SafeRLHF": SourceLicence("cc-by-nc-4.0", "PKU-Alignment/PKU-SafeRLHF", "as declared"),
    "PKU-Alignment/BeaverTails-V": SourceLicence("cc-by-nc-4.0", "PKU-Alignment/BeaverTails-V", "as declared"),
    **{lic.hub: lic for lic in BY_ADAPTER.values() if lic.hub},
}

#: hub id prefixes whose datasets are known to be non-commercial (PKU-SafeRLHF-derived data)
NC_PREFIXES = ("PKU-Alignment/",)


def licence_of(adapter: str, hub: str | None = None) -> SourceLicence:
    """The licence facts of a source: by hub id when it is known, else by adapter, else unknown."""
    if hub and hub in BY_HUB:
        return BY_HUB[hub]
    if hub and hub.startswith(NC_PREFIXES):
        return SourceLicence("cc-by-nc-4.0", hub, "as declared", note="PKU-Alignment data (PKU-SafeRLHF-derived)")
    if adapter in BY_ADAPTER:
        return BY_ADAPTER[adapter]
    return SourceLicence(None, hub, "as declared in the recipe", note="licence unknown")


def corpus_licence(licences: list[str | None]) -> tuple[str, bool, list[str]]:
    """(card licence, non-commercial?, warnings) of a corpus made of sources with these licences.

    Any non-commercial source makes the corpus non-commercial; a source without a known licence is flagged.
    """
    known = sorted({lic for lic in licences if lic})
    nc = sorted(lic for lic in known if lic in NON_COMMERCIAL)
    warnings = []
    if any(lic is None for lic in licences):
        warnings.append("at least one source has no known licence: check its terms before any use")
    if nc:
        return nc[0], True, warnings
    if len(known) == 1:
        return known[0], False, warnings
    return "other", False, warnings
