"""Grad-CAM for every word: attention weighed by how much the output depended on it.

Raw attention shows what a head *read*; it does not say whether reading it mattered for the answer.
Grad-CAM (arXiv 1610.02391, applied to attention as in BLIP's own demo) weighs each attention weight by
how much the output would rise if that weight rose: ``attention * max(0, d output / d attention)``.
For image-text matching the output is the "match" logit; for generated text it is the log-probability
of the token that was chosen. The gradient flows through the text side only; the image tokens are
treated as fixed inputs.
"""

from __future__ import annotations

import torch

from ..model.task_models import QuestionAnsweringModel, RetrievalModel
from ..model.text import TextLMModel


def _leaf(states: torch.Tensor) -> torch.Tensor:
    """A fresh autograd leaf holding ``states``: the graph starts here, so no gradient reaches the ViT
    (the clone also turns tensors made under ``torch.inference_mode`` into ordinary ones)."""
    return states.detach().clone().requires_grad_(True)


def itm_explanation(
    model: RetrievalModel,
    image_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """ITM logits with cross-attention maps and their Grad-CAM for each text.

    Args:
        image_embeds: (1, N, D) tokens of one image (taken as constants: no gradient into the ViT).
        input_ids: (B, T) texts; attention_mask (B, T) marks their padding.

    Returns:
        logits (B, 2); per layer the attention (B, heads, T, N) and Grad-CAM (B, heads, T, N) with
        ``gradcam = attention * relu(d match_logit / d attention)``, zero at padding positions.
    """
    with torch.enable_grad():
        logits, out = model.itm_logits(_leaf(image_embeds), input_ids, attention_mask, output_attentions=True)
        maps = list(out.cross_attentions)
        # Each text's match logit depends only on its own row, so one backward gives every row's gradient.
        grads = torch.autograd.grad(logits[:, 1].sum(), maps)
    cams = []
    for probs, grad in zip(maps, grads, strict=True):
        cam = probs.detach() * grad.clamp(min=0)
        if attention_mask is not None:
            cam = cam * attention_mask[:, None, :, None]  # padding tokens explain nothing
        cams.append(cam)
    return logits.detach(), [m.detach() for m in maps], cams


def decoder_gradcam(
    decoder: TextLMModel,
    encoder_states: torch.Tensor,
    input_ids: torch.Tensor,
    first_generated: int,
) -> list[torch.Tensor]:
    """Grad-CAM of each generated token of one text, targeting that token's log-probability.

    Args:
        encoder_states: (1, S, E) image tokens (or VQA question states).
        input_ids: (1, T) the whole text: [DEC], prompt, generated tokens.
        first_generated: index in ``input_ids`` of the first generated token.

    Returns:
        per layer, (generated tokens, heads, S): for the token at position t, attention * relu(gradient)
        of the query position t - 1 (where that token was predicted).
    """
    positions = range(first_generated, input_ids.shape[1])
    with torch.enable_grad():
        logits, out = decoder(input_ids, _leaf(encoder_states), output_attentions=True)
        logprobs = logits[0].float().log_softmax(dim=-1)
        maps = list(out.cross_attentions)
        per_token = []
        for t in positions:
            grads = torch.autograd.grad(logprobs[t - 1, input_ids[0, t]], maps, retain_graph=True)
            # Causal masking means only query positions <= t - 1 get gradient; the map is the row t - 1.
            per_token.append(
                [
                    (m[0, :, t - 1] * g[0, :, t - 1].clamp(min=0)).detach()
                    for m, g in zip(maps, grads, strict=True)
                ]
            )
    return [torch.stack([tok[layer] for tok in per_token]) for layer in range(len(maps))]


def answer_explanation(
    model: QuestionAnsweringModel,
    image_embeds: torch.Tensor,
    question_ids: torch.Tensor,
    answer_ids: torch.Tensor,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Heatmaps for VQA, where the answer decoder never sees the image: it reads the question states,
    and only the question encoder looks at the image.

    Args:
        image_embeds: (1, N, D) image tokens.
        question_ids: (1, Tq) the question as encoded.
        answer_ids: (1, Ta) [DEC] followed by the answer's tokens.

    Returns:
        per layer (each list), four maps over the image tokens:
        question attention (Tq, heads, N) and Grad-CAM of the whole answer's log-likelihood (Tq, heads, N);
        for each answer token (Ta - 1): attention routed through the question (the decoder's attention
        over question tokens times each question token's image attention, averaged over the encoder's
        layers and heads) and Grad-CAM of the token's log-probability summed over question tokens.
    """
    with torch.enable_grad():
        q_out = model.encode_question(_leaf(image_embeds), question_ids, output_attentions=True)
        q_maps = list(q_out.cross_attentions)  # per layer (1, heads, Tq, N)
        logits, a_out = model.answer_logits(q_out.hidden_states, answer_ids, output_attentions=True)
        logprobs = logits[0].float().log_softmax(dim=-1)
        targets = answer_ids[0, 1:]
        token_logprobs = logprobs[:-1].gather(-1, targets[:, None]).squeeze(-1)  # (Ta - 1)
        total_grads = torch.autograd.grad(token_logprobs.sum(), q_maps, retain_graph=True)
        token_cams = []
        for t in range(len(targets)):
            grads = torch.autograd.grad(token_logprobs[t], q_maps, retain_graph=t + 1 < len(targets))
            token_cams.append(
                [(m[0] * g[0].clamp(min=0)).sum(dim=1).detach() for m, g in zip(q_maps, grads, strict=True)]
            )
    question_att = [m[0].detach().transpose(0, 1) for m in q_maps]  # (Tq, heads, N)
    question_cam = [
        (m[0] * g[0].clamp(min=0)).detach().transpose(0, 1) for m, g in zip(q_maps, total_grads, strict=True)
    ]
    image_per_question = torch.stack([m[0] for m in q_maps]).mean(dim=(0, 1)).detach()  # (Tq, N)
    routed = [(d[0, :, :-1].detach() @ image_per_question).transpose(0, 1) for d in a_out.cross_attentions]
    answer_cam = [torch.stack([tok[layer] for tok in token_cams]) for layer in range(len(q_maps))]
    return question_att, question_cam, routed, answer_cam
