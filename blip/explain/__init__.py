"""Explanations: where the model looked for each word (attention and Grad-CAM maps, as data in
:mod:`.maps`, computed in :mod:`.gradcam`) and how a map is drawn over the picture (:mod:`.render`)."""
