"""Models behind OpenAI-compatible endpoints (vLLM, TGI, llama.cpp, Ollama, `transformers serve`,
Hugging Face Inference Providers): their configuration, a streaming client, and benchmarks over the
network. Imports billion.core only; the arena, the benchmark runner and the UI dispatch to it.
"""
