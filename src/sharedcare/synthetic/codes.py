"""Every clinical code the synthetic generator emits, with its display text, in one place.

Only codes whose meaning was checked are listed: SNOMED CT and LOINC codes appear in the UK Core
R4 examples or in several independent public code lists; dm+d codes are the virtual medicinal
product (VMP) identifiers, which are SNOMED CT identifiers from the UK drug extension and are
therefore sent with the SNOMED CT system (as UK Core does). ICD-10 and OPCS-4 codes are only
used inside HL7 v2 DG1/PR1 segments. ``tests/unit/synthetic/test_synthetic_codes.py`` checks
the format of every code here.
"""

from __future__ import annotations

from typing import NamedTuple

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
OPCS4 = "OPCS4"
"""HL7 v2 coding-system name used in PR1-3 for OPCS-4 procedure codes."""
UCUM = "http://unitsofmeasure.org"


class Code(NamedTuple):
    """A coded concept: system, code and display text."""

    system: str
    code: str
    display: str


def _sct(code: str, display: str) -> Code:
    return Code(SNOMED, code, display)


def _ln(code: str, display: str) -> Code:
    return Code(LOINC, code, display)


def _icd(code: str, display: str) -> Code:
    return Code(ICD10, code, display)


def _opcs(code: str, display: str) -> Code:
    return Code(OPCS4, code, display)


class ConditionCodes(NamedTuple):
    """Codes for one long-term condition."""

    snomed: Code
    icd10: Code


CONDITIONS: dict[str, ConditionCodes] = {
    "HYP": ConditionCodes(
        _sct("38341003", "Hypertensive disorder, systemic arterial"),
        _icd("I10", "Essential (primary) hypertension"),
    ),
    "DM": ConditionCodes(
        _sct("44054006", "Diabetes mellitus type 2"),
        _icd("E11.9", "Type 2 diabetes mellitus without complications"),
    ),
    "AST": ConditionCodes(_sct("195967001", "Asthma"), _icd("J45.9", "Asthma, unspecified")),
    "COPD": ConditionCodes(
        _sct("13645005", "Chronic obstructive lung disease"),
        _icd("J44.9", "Chronic obstructive pulmonary disease, unspecified"),
    ),
    "CHD": ConditionCodes(
        _sct("414545008", "Ischemic heart disease"),
        _icd("I25.9", "Chronic ischaemic heart disease, unspecified"),
    ),
    "STIA": ConditionCodes(
        _sct("230690007", "Cerebrovascular accident"),
        _icd("I64", "Stroke, not specified as haemorrhage or infarction"),
    ),
    "AF": ConditionCodes(
        _sct("49436004", "Atrial fibrillation"),
        _icd("I48", "Atrial fibrillation and flutter"),
    ),
    "HF": ConditionCodes(
        _sct("84114007", "Heart failure"), _icd("I50.9", "Heart failure, unspecified")
    ),
    "CKD": ConditionCodes(
        _sct("709044004", "Chronic kidney disease"),
        _icd("N18.9", "Chronic kidney disease, unspecified"),
    ),
    "DEM": ConditionCodes(_sct("52448006", "Dementia"), _icd("F03", "Unspecified dementia")),
    "DEP": ConditionCodes(
        _sct("35489007", "Depressive disorder"),
        _icd("F32.9", "Depressive episode, unspecified"),
    ),
    "MH": ConditionCodes(
        _sct("58214004", "Schizophrenia"), _icd("F20.9", "Schizophrenia, unspecified")
    ),
    "CAN": ConditionCodes(
        _sct("363346000", "Malignant neoplastic disease"),
        _icd("C80.9", "Malignant neoplasm, primary site unspecified"),
    ),
    "LD": ConditionCodes(
        _sct("110359009", "Intellectual disability"),
        _icd("F79.9", "Unspecified mental retardation without mention of impairment of behaviour"),
    ),
}
"""Long-term conditions keyed by their QOF register group code (MH = serious mental illness)."""

TIA = _sct("266257000", "Transient ischemic attack")
STROKE_INFARCT_ICD = _icd("I63.9", "Cerebral infarction, unspecified")

FRAILTY = _sct("248279007", "Frailty")
SMOKING_STATUS = _ln("72166-2", "Tobacco smoking status")
SMOKER = _sct("77176002", "Smoker")
EX_SMOKER = _sct("8517006", "Ex-smoker")
NEVER_SMOKED = _sct("266919005", "Never smoked tobacco")

BMI = _ln("39156-5", "Body mass index (BMI) [Ratio]")
BMI_SCT = _sct("60621009", "Body mass index")
BP_PANEL = _ln("85354-9", "Blood pressure panel with all children optional")
BP_SCT = _sct("75367002", "Blood pressure")
SYSTOLIC = _ln("8480-6", "Systolic blood pressure")
DIASTOLIC = _ln("8462-4", "Diastolic blood pressure")
BODY_WEIGHT = _ln("29463-7", "Body weight")


class LabTest(NamedTuple):
    """One analyte of a pathology panel, with its adult reference range."""

    code: Code
    unit: str
    low: float
    high: float
    decimals: int


UE_PANEL = Code("urn:sharedcare:local-test", "UE", "Urea and electrolytes")
"""Order code for U&E. One Dorset Pathology orders use local test codes in OBR-4, as labs do."""
FBC_PANEL = Code("urn:sharedcare:local-test", "FBC", "Full blood count")
HBA1C_PANEL = Code("urn:sharedcare:local-test", "HBA1C", "Haemoglobin A1c")
LIPID_PANEL = Code("urn:sharedcare:local-test", "LIPID", "Lipid profile")

LAB_PANELS: dict[str, tuple[Code, tuple[LabTest, ...]]] = {
    "FBC": (
        FBC_PANEL,
        (
            LabTest(_ln("718-7", "Hemoglobin [Mass/volume] in Blood"), "g/L", 120, 170, 0),
            LabTest(
                _ln("6690-2", "Leukocytes [#/volume] in Blood by Automated count"),
                "10*9/L",
                4.0,
                11.0,
                1,
            ),
            LabTest(
                _ln("777-3", "Platelets [#/volume] in Blood by Automated count"),
                "10*9/L",
                150,
                400,
                0,
            ),
        ),
    ),
    "UE": (
        UE_PANEL,
        (
            LabTest(
                _ln("2951-2", "Sodium [Moles/volume] in Serum or Plasma"), "mmol/L", 133, 146, 0
            ),
            LabTest(
                _ln("2823-3", "Potassium [Moles/volume] in Serum or Plasma"), "mmol/L", 3.5, 5.3, 1
            ),
            LabTest(
                _ln("14682-9", "Creatinine [Moles/volume] in Serum or Plasma"), "umol/L", 59, 104, 0
            ),
            LabTest(
                _ln(
                    "33914-3",
                    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum "
                    "or Plasma by Creatinine-based formula (MDRD)",
                ),
                "mL/min/{1.73_m2}",
                60,
                200,
                0,
            ),
        ),
    ),
    "HBA1C": (
        HBA1C_PANEL,
        (
            LabTest(
                _ln("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol"),
                "mmol/mol",
                20,
                41,
                0,
            ),
        ),
    ),
    "LIPID": (
        LIPID_PANEL,
        (
            LabTest(
                _ln("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma"), "mmol/L", 0, 5.0, 1
            ),
            LabTest(
                _ln("14646-4", "Cholesterol in HDL [Moles/volume] in Serum or Plasma"),
                "mmol/L",
                1.0,
                3.0,
                2,
            ),
            LabTest(
                _ln("22748-8", "Cholesterol in LDL [Moles/volume] in Serum or Plasma"),
                "mmol/L",
                0,
                3.0,
                1,
            ),
            LabTest(
                _ln("14927-8", "Triglyceride [Moles/volume] in Serum or Plasma"),
                "mmol/L",
                0,
                1.7,
                1,
            ),
        ),
    ),
}
"""Pathology panels by local order code: (order code, analytes)."""


class Medication(NamedTuple):
    """A dm+d virtual medicinal product with a typical dose instruction."""

    code: Code
    dosage: str


def _dmd(code: str, display: str, dosage: str) -> Medication:
    return Medication(Code(SNOMED, code, display), dosage)


MEDICATIONS: dict[str, tuple[Medication, ...]] = {
    "HYP": (
        _dmd("319283006", "Amlodipine 5mg tablets", "One tablet once a day"),
        _dmd("319773006", "Ramipril 5mg capsules", "One capsule once a day"),
    ),
    "DM": (_dmd("325278007", "Metformin 500mg tablets", "One tablet twice a day with food"),),
    "AST": (
        _dmd(
            "39113611000001102",
            "Salbutamol 100micrograms/dose inhaler CFC free",
            "Two puffs when required",
        ),
    ),
    "COPD": (
        _dmd(
            "39113611000001102",
            "Salbutamol 100micrograms/dose inhaler CFC free",
            "Two puffs when required",
        ),
    ),
    "AF": (_dmd("42206511000001102", "Apixaban 5mg tablets", "One tablet twice a day"),),
    "HF": (_dmd("319773006", "Ramipril 5mg capsules", "One capsule once a day"),),
}
"""Repeat medications by condition (conditions without a checked dm+d code get none)."""

ACUTE_MEDICATIONS: tuple[Medication, ...] = (
    _dmd("39732411000001106", "Amoxicillin 500mg capsules", "One capsule three times a day"),
    _dmd("41946511000001109", "Clarithromycin 500mg tablets", "One tablet twice a day"),
    _dmd("41948311000001104", "Doxycycline 100mg capsules", "One capsule once a day"),
    _dmd("39687811000001107", "Ciprofloxacin 500mg tablets", "One tablet twice a day"),
)

ALLERGIES: tuple[tuple[Code, str, float], ...] = (
    (_sct("91936005", "Allergy to penicillin"), "medication", 0.06),
    (_sct("91935009", "Allergy to peanuts"), "food", 0.01),
    (_sct("300916003", "Latex allergy"), "environment", 0.005),
)
"""(code, FHIR category, share of people) for recorded allergies."""
NO_KNOWN_DRUG_ALLERGY = _sct("409137002", "No known drug allergy")

ENCOUNTER_GP = _sct("11429006", "Consultation")
GP_SERVICE = _sct("788007007", "General practice service")
AE_SERVICE = _sct("310000008", "Accident and Emergency service")
CARDIOLOGY_SERVICE = _sct("789718008", "Cardiology service")
REFERRED_BY_GP = _sct("108161000000109", "Referred by general practitioner")

ADMISSION_DIAGNOSES: tuple[Code, ...] = (
    _icd("J18.9", "Pneumonia, unspecified"),
    _icd("N39.0", "Urinary tract infection, site not specified"),
    _icd("R07.4", "Chest pain, unspecified"),
    _icd("I21.9", "Acute myocardial infarction, unspecified"),
    _icd("S72.0", "Fracture of neck of femur"),
    _icd("K35.8", "Acute appendicitis, other and unspecified"),
    _icd("J44.1", "Chronic obstructive pulmonary disease with acute exacerbation, unspecified"),
    _icd("R55", "Syncope and collapse"),
)
"""Primary diagnoses for emergency admissions (ICD-10, sent in DG1)."""

PROCEDURES: dict[str, Code] = {
    "S72.0": _opcs("W46.1", "Primary prosthetic replacement of head of femur using cement"),
    "K35.8": _opcs("H01.9", "Unspecified emergency excision of appendix"),
}
"""OPCS-4 procedure sent in PR1 for diagnoses that are usually operated on."""

TREATMENT_FUNCTIONS: dict[str, str] = {
    "100": "General Surgery",
    "101": "Urology",
    "110": "Trauma and Orthopaedic",
    "120": "Ear Nose and Throat",
    "130": "Ophthalmology",
    "320": "Cardiology",
    "330": "Dermatology",
    "340": "Respiratory Medicine",
    "420": "Paediatrics",
    "502": "Gynaecology",
}
"""NHS Data Dictionary treatment function codes used for RTT pathways."""

ETHNIC_CATEGORIES: dict[str, str] = {
    "A": "White - British",
    "B": "White - Irish",
    "C": "White - Any other White background",
    "D": "Mixed - White and Black Caribbean",
    "E": "Mixed - White and Black African",
    "F": "Mixed - White and Asian",
    "G": "Mixed - Any other mixed background",
    "H": "Asian or Asian British - Indian",
    "J": "Asian or Asian British - Pakistani",
    "K": "Asian or Asian British - Bangladeshi",
    "L": "Asian or Asian British - Any other Asian background",
    "M": "Black or Black British - Caribbean",
    "N": "Black or Black British - African",
    "P": "Black or Black British - Any other Black background",
    "R": "Other Ethnic Groups - Chinese",
    "S": "Other Ethnic Groups - Any other ethnic group",
    "Z": "Not stated",
}
"""NHS Data Dictionary ethnic category codes (UKCore-EthnicCategoryEngland)."""

ALL_CODES: tuple[Code, ...] = (
    *(c.snomed for c in CONDITIONS.values()),
    *(c.icd10 for c in CONDITIONS.values()),
    TIA,
    STROKE_INFARCT_ICD,
    FRAILTY,
    SMOKING_STATUS,
    SMOKER,
    EX_SMOKER,
    NEVER_SMOKED,
    BMI,
    BMI_SCT,
    BP_PANEL,
    BP_SCT,
    SYSTOLIC,
    DIASTOLIC,
    BODY_WEIGHT,
    *(t.code for _, tests in LAB_PANELS.values() for t in tests),
    *(m.code for meds in MEDICATIONS.values() for m in meds),
    *(m.code for m in ACUTE_MEDICATIONS),
    *(a[0] for a in ALLERGIES),
    NO_KNOWN_DRUG_ALLERGY,
    ENCOUNTER_GP,
    GP_SERVICE,
    AE_SERVICE,
    CARDIOLOGY_SERVICE,
    REFERRED_BY_GP,
    *ADMISSION_DIAGNOSES,
    *PROCEDURES.values(),
)
"""Every standard code above, for the format test."""
