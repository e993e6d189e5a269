"""Models behind OpenAI-compatible endpoints (vLLM, TGI, llama.cpp, Ollama, `transformers serve`,
Hugging Face Inference Providers): their configuration and a streaming client; benchmarks over the
network. Imports billion.core only; the arena, the benchmark runner (billion.bench.endpoint_tasks)
and the UI dispatch to it.
"""
