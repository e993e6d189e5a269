"""The Gradio UI: one module per tab. The only package of billion that imports gradio or spaces."""
