"""Facts that training and serving must agree on (GEM, see shared/gem-spec.md).

Written once here, numpy-free and torch-free, imported by gem_train, gem_export and gem_runtime.
"""

# --- ECG time series (ECG-CoCa input) ---------------------------------------------------------
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
ECG_FS = 500            # Hz: GEM assumes 500 Hz input (it never resamples; we do, see preprocess)
ECG_SECONDS = 10
ECG_SAMPLES = ECG_FS * ECG_SECONDS   # 5000: the ECG tower's positional table is fixed to this
MIN_ECG_SECONDS = 2.0   # shorter records are refused rather than mostly zero-padded

# --- Image (CLIP) ---------------------------------------------------------------------------
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# --- Prompt (llava_v1 conversation template, verbatim from LLaVA's conversation.py) -----------
SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ROLES = ("USER", "ASSISTANT")
SEP = " "
SEP2 = "</s>"
IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200   # the sentinel id; not a vocabulary id
IGNORE_INDEX = -100
DEFAULT_QUESTION = (
    "Please interpret this ECG and provide a grounded diagnosis, citing the measurements "
    "and lead findings that support each conclusion."
)
EOS_ID = 2
BOS_ID = 1
