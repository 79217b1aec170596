"""The names of the audit's checks, apart from the checks themselves.

Two modules need the list without needing each other: ``data.audit`` (which runs the checks and
refuses an unknown ``--fail-on`` name) and ``data.audit_reuse`` (whose fingerprint changes when the
set of checks does, so an audit made by other checks is never reused).
"""

CHECK_NAMES = (
    "exact_duplicates", "shared_boilerplate", "near_duplicates", "conflicting_targets", "empty_inputs",
    "missing_targets", "too_long",
    "pii", "leakage", "class_balance", "unknown_labels", "suspected_mislabels",
    "empty_assistant_replies", "assistant_coverage", "template_round_trip", "eos_coverage",  # chat data only
    "annotator_agreement",  # with data.annotator_field
    "review_sample",
)
"""Every check the audit can run: the names ``--fail-on`` accepts (with ``rejected``), checked before
the audit starts."""
