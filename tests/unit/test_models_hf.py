"""Local Hugging Face causal LMs: loading rules, LoRA, and the prompt classifier."""

import json
import shutil

import pytest

pytest.importorskip("transformers", reason="the llm extra is not installed (pip install -e '.[llm]')")
pytest.importorskip("peft", reason="the llm extra is not installed (pip install -e '.[llm]')")

import torch  # noqa: E402
from llm_fixtures import make_opt  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from mpihybrid.data.text import encode  # noqa: E402
from mpihybrid.errors import ConfigError  # noqa: E402
from mpihybrid.models import evaluation_sums  # noqa: E402
from mpihybrid.models.hf import label_token_ids, load_causal_lm, load_tokenizer, prompt_classifier  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_opt(tmp_path_factory.mktemp("opt"))


def _classifier(path, **kw):
    return load_tokenizer(str(path)), prompt_classifier(str(path), [" bad", " good"], **kw)


PROMPTS = ["a good film It was", "the plot was long and the actors dull . It was", "fun It was"]


def test_a_left_padded_batch_scores_each_prompt_as_it_would_alone(ckpt):
    tok, clf = _classifier(ckpt)
    x = torch.from_numpy(encode(PROMPTS, tok, 64))
    assert x.shape[:2] == (3, 2) and int(x[2, 1].sum()) < x.shape[2]  # the short prompt is padded
    logits = clf(x)
    assert logits.shape == (3, 2) and logits.dtype == torch.float32
    bad, good = label_token_ids(tok, [" bad", " good"])
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        alone = clf.lm(input_ids=ids).logits[0, -1, [bad, good]]
        assert torch.allclose(logits[i], alone, atol=1e-5), (i, logits[i], alone)
    # The existing classifier paths take it as it is.
    loss, correct, n = evaluation_sums(clf, x, torch.tensor([1, 0, 1]))
    assert n == 3 and 0 <= correct <= 3 and loss > 0


def test_train_mode_keeps_dropout_off(ckpt):
    tok, clf = _classifier(ckpt)
    assert clf.lm.config.dropout > 0
    x = torch.from_numpy(encode(PROMPTS, tok, 64))
    clf.train()
    assert clf.training and not clf.lm.training
    assert torch.equal(clf(x), clf(x))


def test_bfloat16_weights_and_float32_logits(ckpt):
    tok, clf = _classifier(ckpt, dtype="bfloat16")
    assert {p.dtype for p in clf.parameters()} == {torch.bfloat16}
    assert clf(torch.from_numpy(encode(PROMPTS, tok, 64))).dtype == torch.float32


def test_all_parameters_are_trainable_and_tied_weights_count_once(ckpt):
    lm = load_causal_lm(str(ckpt))
    trainable = [p for p in lm.parameters() if p.requires_grad]
    assert len(trainable) == len(list(lm.parameters())) and lm.lm_head.weight is lm.model.decoder.embed_tokens.weight
    weights = load_file(str(ckpt / "model.safetensors"))
    assert torch.equal(lm.model.decoder.embed_tokens.weight, weights["model.decoder.embed_tokens.weight"])


def test_lora_trains_adapters_only_drawn_from_the_seed(ckpt):
    rng = torch.get_rng_state()
    a = load_causal_lm(str(ckpt), trainable="lora", lora_rank=4, lora_alpha=8, seed=1)
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator is left alone
    named = {n: p for n, p in a.named_parameters() if p.requires_grad}
    assert named and all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in named)
    hidden, layers = a.config.hidden_size, a.config.num_hidden_layers
    assert sum(p.numel() for p in named.values()) == layers * 2 * 2 * 4 * hidden
    b = load_causal_lm(str(ckpt), trainable="lora", lora_rank=4, lora_alpha=8, seed=1)
    c = load_causal_lm(str(ckpt), trainable="lora", lora_rank=4, lora_alpha=8, seed=2)
    b_named = dict(b.named_parameters())
    assert all(torch.equal(p, b_named[n]) for n, p in named.items())
    a_name = next(n for n in named if "lora_A" in n)
    assert not torch.equal(named[a_name], dict(c.named_parameters())[a_name])


def test_label_words_must_be_one_known_token_each(ckpt):
    tok = load_tokenizer(str(ckpt))
    assert len(set(label_token_ids(tok, ["Yes", "No", "Maybe"]))) == 3
    for words, says in (
        ([" It was", " good"], "2 tokens"),
        ([" superb", " bad"], "unknown"),
        (["No", "No"], "distinct"),
    ):
        with pytest.raises(ConfigError, match=says) as err:
            label_token_ids(tok, words)
        assert err.value.key == "data.name"


def test_bad_model_paths_name_the_key(tmp_path, ckpt):
    with pytest.raises(ConfigError, match="not a directory") as err:
        load_causal_lm(str(tmp_path / "missing"))
    assert err.value.key == "model.path"
    with pytest.raises(ConfigError, match="no config.json"):
        load_causal_lm(str(tmp_path))
    bare = make_opt(tmp_path / "bare", tokenizer=False)
    with pytest.raises(ConfigError, match="no tokenizer") as err:
        load_causal_lm(str(bare))
    assert err.value.key == "model.path"


def test_weights_that_do_not_fit_the_model_are_refused(tmp_path, ckpt):
    """transformers would fill missing weights with random ones; a run must not train those."""
    partial = tmp_path / "partial"
    shutil.copytree(ckpt, partial)
    weights = load_file(str(partial / "model.safetensors"))
    del weights["model.decoder.layers.1.fc1.weight"]
    save_file(weights, str(partial / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="1 weights missing"):
        load_causal_lm(str(partial))
    (partial / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="not a causal LM that loads") as err:
        load_causal_lm(str(partial))
    assert err.value.key == "model.path"


def test_pickle_weights_need_the_opt_in(tmp_path, ckpt):
    pickled = tmp_path / "pickled"
    shutil.copytree(ckpt, pickled)
    torch.save(load_file(str(pickled / "model.safetensors")), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="pickle") as err:
        load_causal_lm(str(pickled))
    assert err.value.key == "model.allow_pickle"
    lm = load_causal_lm(str(pickled), allow_pickle=True)
    ref = load_causal_lm(str(ckpt))
    assert all(torch.equal(p, q) for p, q in zip(lm.parameters(), ref.parameters()))


def test_code_in_the_checkpoint_directory_never_runs(tmp_path, ckpt):
    evil = tmp_path / "evil"
    shutil.copytree(ckpt, evil)
    marker = tmp_path / "ran"
    (evil / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((evil / "config.json").read_text())
    config.update(
        model_type="evil",
        auto_map={"AutoConfig": "modeling_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilLM"},
    )
    (evil / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as err:
        load_causal_lm(str(evil))
    assert err.value.key == "model.path" and not marker.exists()
