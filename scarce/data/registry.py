"""Registered datasets (``scarce data list``): task, metric, classes, splits and OOD test sets.

Why a registry: experiments name datasets in configs (``data.dataset: isic2017``); the record
says which split of the folder's ``split.csv`` is the labelled pool and which is the official
test set, which datasets serve as out-of-distribution (OOD) tests, and the primary metric.
An unregistered folder path works too: :func:`get_info` builds a record on the fly.
"""
from __future__ import annotations

from pathlib import Path

from scarce.data.types import DataError, DatasetInfo
from scarce.registry import Registry

DATASETS: Registry[DatasetInfo] = Registry("dataset")

_SKIN_OOD = ("ph2", "dermis")
_LUNG = ("jsrt", "montgomery", "shenzhen")
_POLYP = ("kvasir_seg", "cvc_clinicdb", "cvc_colondb", "etis", "cvc_300")


def _add(info: DatasetInfo) -> DatasetInfo:
    DATASETS.register(info.name, info)
    return info


def _others(name: str, group: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(g for g in group if g != name)


# ---------------------------------------------------------------- skin lesions (Jaccard, as ISIC)
_add(DatasetInfo(
    name="isic2017", task="skin", metric="jaccard", loss="bce_jaccard", ood=_SKIN_OOD,
    train_split="train", test_split="val",
    description="ISIC 2017 Part 1 dermoscopic lesion segmentation (1700 train + 150 official val "
                "used as ID test; the 600 test masks are not public).",
    citation="Codella et al., Skin lesion analysis toward melanoma detection: ISIC 2017 challenge, "
             "ISBI 2018. doi:10.1109/ISBI.2018.8363547",
    url="https://challenge.isic-archive.com/data/#2017"))
_add(DatasetInfo(
    name="isic2018", task="skin", metric="jaccard", loss="bce_jaccard", ood=_SKIN_OOD,
    train_split="train", test_split="test",
    description="ISIC 2018 Task 1 lesion boundary segmentation (2594 train / 100 val / 1000 test).",
    citation="Codella et al., Skin lesion analysis toward melanoma detection 2018, arXiv:1902.03368; "
             "Tschandl et al., The HAM10000 dataset, Sci. Data 2018.",
    url="https://challenge.isic-archive.com/data/#2018"))
_add(DatasetInfo(
    name="ph2", task="skin", metric="jaccard", loss="bce_jaccard", ood=("dermis",),
    description="PH2: 200 dermoscopic images (Hospital Pedro Hispano); OOD test set for ISIC.",
    citation="Mendonca et al., PH2 - A dermoscopic image database for research and benchmarking, "
             "EMBC 2013. doi:10.1109/EMBC.2013.6610779",
    url="https://www.fc.up.pt/addi/ph2%20database.html"))
_add(DatasetInfo(
    name="dermis", task="skin", metric="jaccard", loss="bce_jaccard", ood=("ph2",),
    description="Dermis (DermQuest/Dermis skin cancer detection set): 69 clinical (non-dermoscopic) "
                "lesion photographs; OOD test set for ISIC.",
    citation="Glaister et al., MSIM: multistage illumination modeling of dermatological photographs "
             "for illumination-corrected skin lesion analysis, IEEE TBME 2013.",
    url="https://uwaterloo.ca/vision-image-processing-lab/research-demos/skin-cancer-detection"))

# ---------------------------------------------------------------- chest X-ray lungs
_add(DatasetInfo(
    name="jsrt", task="lung", metric="dice", channels=1, ood=_others("jsrt", _LUNG),
    description="JSRT chest radiographs (247) with SCR lung masks.",
    citation="Shiraishi et al., AJR 2000; van Ginneken et al., Segmentation of anatomical structures "
             "in chest radiographs (SCR), Med. Image Anal. 2006.",
    url="http://db.jsrt.or.jp/eng.php"))
_add(DatasetInfo(
    name="montgomery", task="lung", metric="dice", channels=1, ood=_others("montgomery", _LUNG),
    description="Montgomery County CXR set: 138 chest X-rays with merged left+right lung masks "
                "(no official split: a fixed 20% is held out as ID test).",
    citation="Jaeger et al., Two public chest X-ray datasets for computer-aided screening of "
             "pulmonary diseases, QIMS 2014. doi:10.3978/j.issn.2223-4292.2014.11.20",
    url="https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"))
_add(DatasetInfo(
    name="shenzhen", task="lung", metric="dice", channels=1, ood=_others("shenzhen", _LUNG),
    description="Shenzhen Hospital CXR set (566 lung masks).",
    citation="Jaeger et al., QIMS 2014; Stirenko et al., Chest X-ray analysis of tuberculosis by "
             "deep learning with segmentation and augmentation, ELNANO 2018.",
    url="https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"))

# ---------------------------------------------------------------- colonoscopy polyps
_add(DatasetInfo(
    name="kvasir_seg", task="polyp", metric="dice", ood=_others("kvasir_seg", _POLYP),
    train_split="train", test_split="val",
    description="Kvasir-SEG: 1000 polyp images; the authors' split 880 train / 120 'val' (ID test).",
    citation="Jha et al., Kvasir-SEG: A segmented polyp dataset, MMM 2020. "
             "doi:10.1007/978-3-030-37734-2_37",
    url="https://datasets.simula.no/kvasir-seg/"))
_add(DatasetInfo(
    name="cvc_clinicdb", task="polyp", metric="dice", ood=_others("cvc_clinicdb", _POLYP),
    description="CVC-ClinicDB (CVC-612): 612 colonoscopy frames from 31 videos; used as OOD test.",
    citation="Bernal et al., WM-DOVA maps for accurate polyp highlighting in colonoscopy, CMIG 2015. "
             "doi:10.1016/j.compmedimag.2015.02.007",
    url="https://polyp.grand-challenge.org/CVCClinicDB/"))
_add(DatasetInfo(
    name="cvc_colondb", task="polyp", metric="dice", ood=_others("cvc_colondb", _POLYP),
    description="CVC-ColonDB: 380 colonoscopy frames from 15 videos; OOD polyp test set.",
    citation="Bernal et al., Towards automatic polyp detection with a polyp appearance model, "
             "Pattern Recognition 2012.",
    url="http://vi.cvc.uab.es/colon-qa/cvccolondb/"))
_add(DatasetInfo(
    name="etis", task="polyp", metric="dice", ood=_others("etis", _POLYP),
    description="ETIS-LaribPolypDB: 196 colonoscopy frames; OOD polyp test set.",
    citation="Silva et al., Toward embedded detection of polyps in WCE images for early diagnosis "
             "of colorectal cancer, IJCARS 2014.",
    url="https://polyp.grand-challenge.org/EtisLarib/"))
_add(DatasetInfo(
    name="cvc_300", task="polyp", metric="dice", ood=_others("cvc_300", _POLYP),
    description="CVC-300 (EndoScene test part): 60 frames; OOD polyp test set.",
    citation="Vazquez et al., A benchmark for endoluminal scene segmentation of colonoscopy images, "
             "J. Healthc. Eng. 2017.",
    url="http://www.cvc.uab.es/CVC-Colon/index.php/databases/cvc-endoscenestill/"))

# ---------------------------------------------------------------- breast ultrasound
_add(DatasetInfo(
    name="busi", task="breast", metric="dice", channels=1, ood=("busi_b",),
    description="BUSI: 780 breast ultrasound images (benign/malignant/normal; normal masks empty).",
    citation="Al-Dhabyani et al., Dataset of breast ultrasound images, Data in Brief 2020. "
             "doi:10.1016/j.dib.2019.104863",
    url="https://scholar.cu.edu.eg/?q=afahmy/pages/dataset"))
_add(DatasetInfo(
    name="busi_b", task="breast", metric="dice", channels=1, ood=("busi",),
    description="Dataset B (UDIAT, Sabadell): 163 breast ultrasound images; OOD test for BUSI.",
    citation="Yap et al., Automated breast ultrasound lesions detection using convolutional neural "
             "networks, IEEE JBHI 2018.",
    url="http://www2.docm.mmu.ac.uk/STAFF/m.yap/dataset.php"))

# ---------------------------------------------------------------- others
_add(DatasetInfo(
    name="fpd", task="placenta", metric="dice",
    description="Fetoscopy Placenta Dataset: placental vessel segmentation in fetoscopic frames "
                "(6 in-vivo TTTS procedures).",
    citation="Bano et al., Deep placental vessel segmentation for fetoscopic mosaicking, MICCAI 2020.",
    url="https://www.ucl.ac.uk/interventional-surgical-sciences/fetoscopy-placenta-data"))
# Multi-domain fundus benchmark of DoFE / MiDSS (`scarce data import fundus_dofe SRC DEST`): one
# folder per domain, official train/test split, label ids 0 background, 1 rim, 2 cup.
_FUNDUS = ("fundus_domain1", "fundus_domain2", "fundus_domain3", "fundus_domain4")
for _name, _what, _cite in (
        ("fundus_domain1", "Drishti-GS: 101 ROIs, 50 train / 51 test",
         "Sivaswamy et al., Drishti-GS, ISBI 2014"),
        ("fundus_domain2", "RIM-ONE-r3: 159 ROIs, 99 train / 60 test",
         "Fumero et al., RIM-ONE: an open retinal image database for optic nerve evaluation, CBMS 2011"),
        ("fundus_domain3", "REFUGE training set: 400 ROIs, 320 train / 80 test",
         "Orlando et al., REFUGE challenge, Med. Image Anal. 2020"),
        ("fundus_domain4", "REFUGE validation set: 400 ROIs, 320 train / 80 test",
         "Orlando et al., REFUGE challenge, Med. Image Anal. 2020")):
    _add(DatasetInfo(
        name=_name, task="fundus", metric="dice", classes=("background", "rim", "cup"),
        loss="ce_dice", train_split="train", test_split="test", ood=_others(_name, _FUNDUS),
        description=f"DoFE/MiDSS fundus Domain{_name[-1]}, {_what} (optic-disc crops); label ids 0 "
                    f"background, 1 optic-disc rim (disc outside the cup), 2 cup.",
        citation=f"Wang et al., DoFE: domain-oriented feature embedding for generalizable fundus "
                 f"image segmentation on unseen datasets, IEEE TMI 2020; {_cite}.",
        url="https://github.com/emma-sjwang/Dofe"))
_add(DatasetInfo(
    name="fundus_drishti", task="fundus", metric="dice", classes=("background", "rim", "cup"),
    loss="ce_dice", train_split="train", test_split="test",
    description="Drishti-GS1: 101 fundus images (official 50 train / 51 test); label ids 0 "
                "background, 1 optic-disc rim (disc outside the cup), 2 cup.",
    citation="Sivaswamy et al., Drishti-GS: Retinal image dataset for optic nerve head (ONH) "
             "segmentation, ISBI 2014. doi:10.1109/ISBI.2014.6867807",
    url="https://cvit.iiit.ac.in/projects/mip/drishti-gs/mip-dataset2/Home.php"))
# Multi-site prostate MRI of SAML (`scarce data import prostate_saml SRC DEST`): one folder per
# site, 2D slices of T2-weighted volumes, binary masks, split.csv by case.
_PROSTATE = ("prostate_runmc", "prostate_bmc", "prostate_i2cvb", "prostate_ucl", "prostate_bidmc",
             "prostate_hk")
for _name, _what, _cite in (
        ("prostate_runmc", "site A, RUNMC: 30 cases from NCI-ISBI 2013",
         "Bloch et al., NCI-ISBI 2013 challenge, TCIA 2015"),
        ("prostate_bmc", "site B, BMC: 30 cases from NCI-ISBI 2013",
         "Bloch et al., NCI-ISBI 2013 challenge, TCIA 2015"),
        ("prostate_i2cvb", "site C, I2CVB: 19 cases",
         "Lemaitre et al., Comput. Biol. Med. 2015"),
        ("prostate_ucl", "site D, UCL: 13 cases from PROMISE12",
         "Litjens et al., PROMISE12, Med. Image Anal. 2014"),
        ("prostate_bidmc", "site E, BIDMC: 12 cases from PROMISE12",
         "Litjens et al., PROMISE12, Med. Image Anal. 2014"),
        ("prostate_hk", "site F, HK: 12 cases from PROMISE12",
         "Litjens et al., PROMISE12, Med. Image Anal. 2014")):
    _add(DatasetInfo(
        name=_name, task="prostate", metric="dice", channels=1, train_split="train",
        test_split="test", ood=_others(_name, _PROSTATE),
        description=f"SAML multi-site prostate MRI, {_what}; axial 2D slices (8-bit), binary "
                    f"prostate masks; split.csv by case (import option, default 20 % test).",
        citation=f"Liu, Dou, Heng, Shape-aware meta-learning for generalizing prostate MRI "
                 f"segmentation to unseen domains (SAML), MICCAI 2020; {_cite}.",
        url="https://liuquande.github.io/SAML/"))
del _name, _what, _cite

# ---------------------------------------------------------------- built-in synthetic data
_add(DatasetInfo(
    name="synthetic", task="synthetic", metric="dice", ood=("synthetic_ood",),
    train_split="train", test_split="test",
    description="Generated blobs whose texture/colour differs from the background "
                "(scarce.data.synthetic); needs no download. Used by the demo and tests.",
    citation="-"))
_add(DatasetInfo(
    name="synthetic_ood", task="synthetic", metric="dice",
    train_split="train", test_split="test",
    description="Synthetic data with shifted colour, contrast and texture (domain shift).",
    citation="-"))


def primary_metric(name_or_path: str | Path, num_classes: int | None = None) -> str:
    """The dataset's primary metric (``jaccard`` for skin lesions, else ``dice``); ``dice`` for a
    folder the registry cannot describe."""
    try:
        return str(get_info(name_or_path, num_classes=num_classes).metric)
    except Exception:
        return "dice"


def get_info(name_or_path: str | Path, num_classes: int | None = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of a registered name, or one built on the fly for a folder.

    For an unregistered folder (``images/`` + ``masks/``): name = folder name, metric dice,
    classes binary unless ``num_classes`` is given or the masks hold label ids 0..K-1 (K > 2),
    channels 1 when the first image is grayscale, splits from ``split.csv`` (``test`` → official
    test split, ``train`` → labelled pool). Unknown names raise a did-you-mean ``KeyError``.
    """
    text = str(name_or_path)
    if text in DATASETS and not _looks_like_path(text):
        return DATASETS.get(text)
    p = Path(text).expanduser()
    if p.is_dir():
        return _folder_info(p, num_classes)
    if _looks_like_path(text):
        raise DataError(f"dataset folder {text!r} does not exist; pass a registered name "
                        f"({', '.join(DATASETS.names())}) or an existing images/+masks/ folder")
    return DATASETS.get(text)  # KeyError with did-you-mean


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith(".") or text.startswith("~")


def _folder_info(folder: Path, num_classes: int | None) -> DatasetInfo:
    from scarce.data.folder import infer_channels, infer_num_classes, scan_folder

    index = scan_folder(folder, allow_unlabelled=True)  # images without masks: checked where they matter
    k = num_classes or infer_num_classes(index)
    classes = ("background", "foreground") if k == 2 else ("background",) + tuple(
        f"class{i}" for i in range(1, k))
    values = set(index.splits.values()) if index.splits else set()
    test_split = "test" if "test" in values else None
    train_split = "train" if ("train" in values and test_split) else None
    return DatasetInfo(
        name=folder.resolve().name, task="custom", metric="dice", classes=classes,
        folder=str(folder), channels=infer_channels(index), train_split=train_split,
        test_split=test_split, loss="bce_dice" if k == 2 else "ce_dice",
        description=f"unregistered folder {folder}")

