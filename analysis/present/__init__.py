"""What a reader sees: numbers formatted (``formatting``), the ablation table as Markdown / LaTeX / CSV
(``tables``), plots (``plots``), what varied across runs (``config_diff``) and the HTML page (``html``)."""
