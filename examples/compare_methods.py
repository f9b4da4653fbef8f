"""Which attribution method is most faithful on the default model? A small benchmark.

    python examples/compare_methods.py      # about a minute on a laptop CPU

Prints one table section per metric (best method in bold green) and writes
``compare_methods.html``, a self-contained report with a bar chart per metric.
"""

from __future__ import annotations

import genattrib


def main() -> None:
    model = genattrib.load_model()
    result = genattrib.benchmark(
        model,
        methods=["saliency", "input_x_gradient", "integrated_gradients", "occlusion", "attention"],
        dataset="wikitext",
        max_examples=4,
        max_new_tokens=6,
        method_kwargs={"integrated_gradients": {"n_steps": 8}},
    )
    result.show()
    print("report:", result.save_html("compare_methods.html"))
    for metric in result.metrics:
        print(f"best on {metric}: {result.best(metric)}")


if __name__ == "__main__":
    main()
