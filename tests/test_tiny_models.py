from tiny_models import CHATML


def test_tokenizer_roundtrip_and_template(tokenizer, llama):
    text = "The capital of France is Paris."
    assert tokenizer.decode(tokenizer.encode(text)) == text
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n") and tokenizer.chat_template == CHATML
    assert llama.config.vocab_size == len(tokenizer)
