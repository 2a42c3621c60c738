"""Class-activation maps (tumor_ai.core.cam): the served map is Grad-CAM's maths, for any class, in the upload's frame."""

from __future__ import annotations

import numpy as np

from tumor_ai.core.cam import place_in_frame
from tumor_ai.core.imaging import read_image


def test_probabilities_and_cam_match_an_independent_grad_cam(slot_predictors, example_paths):
    """The batched, fused forward-and-CAM function against the keras-io recipe, one image at a time."""
    import keras
    import tensorflow as tf

    predictor = slot_predictors["cnn"]
    images = [read_image(path).pixels for path in example_paths.values()]
    batch = predictor.prepare(images)
    outputs = predictor.run(batch)
    model, metadata = predictor.model, predictor.metadata
    dense = model.get_layer(metadata.logits_layer)
    graph = keras.Model(model.inputs, [model.get_layer(metadata.cam_layer).output, dense.input, model.output])
    for index in range(len(images)):
        with tf.GradientTape() as tape:
            features, penultimate, probabilities = graph(batch[index : index + 1], training=False)
            logits = penultimate @ dense.kernel + dense.bias
            score = logits[:, int(tf.argmax(logits[0]))]
        weights = tf.reduce_mean(tape.gradient(score, features), axis=(0, 1, 2))  # keras-io: pooled gradients
        heat = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1))
        heat = (heat / (tf.reduce_max(heat) + 1e-8)).numpy()
        np.testing.assert_allclose(outputs["probabilities"][index], probabilities[0].numpy(), atol=1e-5)  # T = 1 here
        np.testing.assert_allclose(outputs["cam"][index], heat, atol=1e-4)
    assert outputs["cam"].shape == (4, 6, 6)  # block2_out of a 48 px input: stride-2 stem, pool, one pool between blocks


def test_grad_cam_of_a_chosen_class(slot_predictors, example_paths):
    predictor = slot_predictors["cnn"]
    batch = predictor.prepare([read_image(example_paths["glioma"]).pixels])
    top = int(np.argmax(predictor.run(batch)["logits"][0]))
    other = (top + 1) % len(predictor.labels)
    default, chosen_top, chosen_other = (predictor.run(batch, class_index=index)["cam"][0] for index in (None, top, other))
    np.testing.assert_allclose(default, chosen_top, atol=1e-6)
    assert not np.allclose(chosen_top, chosen_other, atol=1e-3), "another class must give another map"
    assert chosen_other.min() >= 0 and chosen_other.max() <= 1 + 1e-6


def test_cam_is_placed_where_the_crop_was():
    cam = np.ones((4, 4), np.float32)
    placed = place_in_frame(cam, (32, 0, 32, 32), (64, 128), grid=64)
    assert placed.shape == (32, 64)
    assert placed[16:, :16].min() > 0.9 and placed[:16].max() == 0 and placed[:, 20:].max() == 0
