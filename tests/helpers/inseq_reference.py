"""Names that Inseq 0.7.1 lists, checked in so that the test suite (which has no Inseq) can hold
genattrib to them: ``benchmarks/parity_core.py`` checks these lists against the real
``inseq.list_feature_attribution_methods()`` / ``inseq.list_step_functions()``, and
tests/targets/test_inseq_step_functions.py checks genattrib against them.

Example:
    >>> "pcxmi" in INSEQ_STEP_FUNCTIONS, "dummy" in INSEQ_METHODS
    (True, True)
"""

INSEQ_VERSION = "0.7.1"

#: inseq.list_feature_attribution_methods() of Inseq 0.7.1 (sorted).
INSEQ_METHODS: tuple[str, ...] = (
    "attention",
    "deeplift",
    "discretized_integrated_gradients",
    "dummy",
    "gradient_shap",
    "input_x_gradient",
    "integrated_gradients",
    "layer_deeplift",
    "layer_gradient_x_activation",
    "layer_integrated_gradients",
    "lime",
    "occlusion",
    "reagent",
    "saliency",
    "sequential_integrated_gradients",
    "value_zeroing",
)

#: inseq.list_step_functions() of Inseq 0.7.1 (its registration order).
INSEQ_STEP_FUNCTIONS: tuple[str, ...] = (
    "logit",
    "probability",
    "entropy",
    "crossentropy",
    "perplexity",
    "contrast_logits",
    "contrast_prob",
    "contrast_logits_diff",
    "contrast_prob_diff",
    "pcxmi",
    "kl_divergence",
    "in_context_pvi",
    "mc_dropout_prob_avg",
    "top_p_size",
)

#: Inseq's contrastive step functions (those with a ``contrast_targets`` parameter).
INSEQ_CONTRASTIVE: tuple[str, ...] = (
    "contrast_logits",
    "contrast_prob",
    "contrast_logits_diff",
    "contrast_prob_diff",
    "pcxmi",
    "kl_divergence",
    "in_context_pvi",
)
