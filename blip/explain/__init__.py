"""Explanations: where the model looked for each word (attention and Grad-CAM maps, as data in
:mod:`.maps`, computed in :mod:`.gradcam`), which layer to show first (:mod:`.layers`), where the
vision tower's class token gathers its information (:mod:`.rollout`), how a map is drawn over the
picture (:mod:`.render`: blur, colour maps) and decoding drawn as a tree (:mod:`.beam_tree`)."""
