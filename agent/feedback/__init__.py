"""Expert feedback on the agent's answers: stored with their full context, reviewed, exported as
preference data for fine-tuning the VLM.

    from larsight.agent.feedback import FeedbackStore, export
    store = FeedbackStore()                    # SQLite beside the conversations, or any SQLAlchemy URL
    aid = store.record_answer(answer)          # the answer with its event, tools, claims, models
    store.add({"answer_id": aid, "verdict": "down", "author": "kt", "comment": "4 cm gap: a photon",
               "corrections": [{"claim": 2, "mark": "should_be", "label": "photon"}]})
    export(store, "prefs.jsonl", fmt="dpo")    # chosen / rejected pairs of the VLM's own text

A correction is of the answer's claim table or (``of="first_draft"``) of the claims of the language
model's first-draft text; each is stored with its blame: 'model' (the model's own words, not backed
by the observations: these become preference pairs) or 'tool' (the observations said so: the
measurement was off; kept for the perception models, never trained into the VLM).

``models`` (the typed records and the checks of a correction against its claim), ``tables``
(the SQLAlchemy schema, SQLite in WAL mode), ``store`` (``FeedbackStore``), ``render`` (the
prompt and the corrected answer as text), ``export`` (JSON lines and DPO pairs), ``versions``
(the versions of the models behind an answer). The command line: ``larsight feedback``.
"""
from .export import ExportReport, export
from .models import (STATUSES, AnswerRecord, Correction, FeedbackIn, FeedbackInputError, FeedbackItem, ModelText,
                     blame_of, corrections_from, parse_corrected, record_from_answer)
from .render import corrected_text, prompt_text
from .store import FeedbackDatabaseError, FeedbackStore, FeedbackSummary, default_feedback_target
from .versions import model_versions

__all__ = ["FeedbackStore", "FeedbackIn", "FeedbackItem", "FeedbackSummary", "AnswerRecord", "Correction",
           "FeedbackInputError", "FeedbackDatabaseError", "ExportReport", "export", "STATUSES",
           "parse_corrected", "record_from_answer", "corrected_text", "prompt_text", "default_feedback_target",
           "model_versions", "corrections_from", "ModelText", "blame_of"]
