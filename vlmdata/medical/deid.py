"""De-identification you can check: no identifying DICOM header value reaches any output file.

The dicom source exposes only technical header fields (see `dicom_image.HEADER_FIELDS`) and hashes
the UIDs it groups by; this module proves the result. After a build has written everything (the
Arrow files, manifest, card, report, exports, and the synthesis cache if any), `scan` reads the
identifying attributes of the DICOM PS3.15 basic confidentiality profile from every input header
(names, IDs, birth dates, addresses, institution, physicians, accession numbers, study dates, UIDs;
every person-name element, in sequences too) and searches every output byte for each value, whole
and, for names, each name component. The values are held in memory only; the manifest records how
many were searched and where any was found, by attribute keyword, never by value.

Values shorter than `MIN_CHARS` (a 3-character ID occurs by chance inside compressed pixels) and fillers
of one repeated character ("00000") are not searched; the manifest counts them so the limit is visible.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmdata.medical.dicom_image import read_header

MIN_CHARS = 4

# PS3.15 Annex E basic profile: the attributes that identify a patient, a visit or a place.
IDENTIFYING: frozenset[str] = frozenset({
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientBirthDate", "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers",
    "MedicalRecordLocator", "PatientInsurancePlanCodeSequence", "PatientComments", "MilitaryRank",
    "BranchOfService", "CountryOfResidence", "RegionOfResidence", "ResponsiblePerson",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "OperatorsName",
    "RequestingPhysician", "ScheduledPerformingPhysicianName", "AccessionNumber", "StudyID",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID", "AdmissionID",
    "DeviceSerialNumber", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "MediaStorageSOPInstanceUID",
    "FrameOfReferenceUID", "ReferencedSOPInstanceUID", "ReferencedFrameOfReferenceUID",
    "SynchronizationFrameOfReferenceUID", "IrradiationEventUID", "ConcatenationUID",
    "DimensionOrganizationUID", "StorageMediaFileSetUID",
})


class DeidentificationError(Exception):
    """An identifying input value was found in the output: the build fails and nothing is published."""


def hashed(value: str) -> str:
    """A stable, non-reversible stand-in for a UID or ID used to group rows (series, study, patient).

    Keyed by VLMDATA_DEID_KEY when set, so that a guessable ID (a short PatientID) cannot be
    confirmed by hashing candidates; without a key the hash still never shows the value."""
    key = os.environ.get("VLMDATA_DEID_KEY", "")
    return hashlib.sha256(f"vlmdata-deid-v1\0{key}\0{value}".encode()).hexdigest()[:16]


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    # a multi-valued element is a Sequence; a PersonName is iterable but one value
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else [value]
    out = []
    for v in items:
        s = v.decode("latin-1", "replace") if isinstance(v, bytes) else str(v)
        if s.strip():
            out.append(s.strip())
    return out


def identifying_values(ds: Any) -> dict[str, set[str]]:
    """keyword -> the identifying strings in `ds` (its file meta and nested sequences included)."""
    found: dict[str, set[str]] = {}

    def visit(dataset: Any) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            if elem.keyword not in IDENTIFYING and elem.VR != "PN":
                continue
            values = _strings(elem.value)
            if elem.VR == "PN":  # "Doe^John^^Dr" also shows up as "John Doe": search each component
                values += [part.strip() for v in values for part in re.split(r"[\^=]", v) if part.strip()]
            found.setdefault(elem.keyword or str(elem.tag), set()).update(values)

    visit(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        visit(meta)
    return found


def is_placeholder(value: str) -> bool:
    """A filler such as "00000" or "XXXX" (one repeated character): not identifying, and common in output
    file names ("data-00000-of-00001.arrow"), so it is not searched."""
    return len({c for c in value if c.isalnum()}) <= 1


@dataclass
class Collected:
    """Identifying values of many input files: value -> one attribute keyword it came from."""

    values: dict[str, str] = field(default_factory=dict)
    files: int = 0
    short: set[str] = field(default_factory=set)

    def add(self, ds: Any) -> None:
        self.files += 1
        for keyword, vals in identifying_values(ds).items():
            for v in vals:
                if len(v) < MIN_CHARS or is_placeholder(v):
                    self.short.add(v)
                else:
                    self.values.setdefault(v, keyword)


def collect_files(paths: Iterable[Path]) -> Collected:
    import pydicom

    out = Collected()
    for path in paths:
        try:
            try:
                with path.open("rb") as f:
                    ds = read_header(f)  # a deflated file is not inflated whole for its header
            except Exception:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # a file the build rejected as unreadable: nothing of it reached the output
            continue
        out.add(ds)
    return out


def scan(roots: Iterable[Path], collected: Collected) -> dict[str, Any]:
    """Search every file under `roots` for every collected value; the manifest's `deidentification`."""
    files = sorted({p for root in roots if root.exists()
                    for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()})
    hits: list[dict[str, str]] = []
    values = sorted(collected.values, key=len, reverse=True)
    pattern = re.compile(b"|".join(re.escape(v.encode("utf-8")) for v in values)) if values else None
    found_values: set[str] = set()
    base = [r for r in roots if r.is_dir()]
    for f in files:
        if pattern is None or f.stat().st_size == 0:
            continue
        with f.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            seen = {m.group(0).decode("utf-8") for m in pattern.finditer(data)}
        for v in sorted(seen):
            found_values.add(v)
            rel = next((str(f.relative_to(r)) for r in base if f.is_relative_to(r)), f.name)
            hits.append({"file": rel, "attribute": collected.values[v]})
    n = len(found_values)
    return {
        "dicom_files": collected.files,
        "values_searched": len(values),
        "values_too_short_to_search": len(collected.short - set(collected.values)),
        "files_scanned": len(files),
        "identifying_values_found": n,
        "found_in": hits,
        "summary": f"{n} identifying values found in {len(files)} files",
    }


def check_build(*, dicom_inputs: list[Path], roots: list[Path]) -> dict[str, Any]:
    """Scan `roots` for the identifying values of `dicom_inputs`; raise if any is found."""
    result = scan(roots, collect_files(dicom_inputs))
    if result["identifying_values_found"]:
        where = "; ".join(f"{h['attribute']} in {h['file']}" for h in result["found_in"][:20])
        raise DeidentificationError(
            f"de-identification check failed: {result['summary']} ({where}); the dataset was not written. "
            "A header value reached the output, most often through a file or folder name (locators are "
            "relative paths) or a labels column: rename the inputs or drop that column.")
    return result
