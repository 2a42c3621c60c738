"""Guide where the network looks: penalise Grad-CAM mass outside the tumour where a mask is known.

"Right for the right reasons" (Ross et al., 2017) penalises input gradients outside the
evidence a person marked; GAIN (Li et al., 2018) trains on the attention map itself. This is the
Grad-CAM form (or LayerCAM's, as the metadata's ``cam_method`` says), at the layer serving reads
(the metadata's ``cam_layer``): for each tumour slice
with a mask, the share of its class's Grad-CAM that lies in cells with no tumour is added to the
loss. The Grad-CAM channel weights are held fixed within a step (a stop-gradient), so the term
costs one extra backward pass through the small head, not a second-order pass through the network.

Images without a mask (no-tumour slices, erased tumours, the few tumours with no outline) add
nothing, so the term never tells the network where a tumour is not.
"""

from __future__ import annotations

import keras
import tensorflow as tf

CAM_METHODS = ("grad_cam", "layer_cam")  # the maps serving can read (tumor_ai.core.cam), as the metadata names them
EMPTY_MAP = 1e-3  # a map with about this much mass or less counts as pointing nowhere: all outside


def outside_share(cam, inside):
    """Per image, the share of a non-negative map's mass in cells outside ``inside`` (both (B, h, w)).

    An empty map scores 1, not 0, so the network cannot escape the term by making the map vanish.
    """
    total = tf.reduce_sum(cam, axis=(1, 2))
    outside = tf.reduce_sum(cam * (1.0 - inside), axis=(1, 2))
    return (outside + EMPTY_MAP) / (total + EMPTY_MAP)


def mask_cells(masks, cells: tuple[int, int]):
    """(B, H, W, 1) masks in 0..1 to (B, h, w): a cell is inside when any of its pixels is tumour."""
    height, width = masks.shape[1], masks.shape[2]
    pooled = tf.nn.max_pool2d(masks, (height // cells[0], width // cells[1]), (height // cells[0], width // cells[1]), "VALID")
    return pooled[..., 0]


class GuidedModel(keras.Model):
    """Trains ``model`` on ``((images, masks), labels)`` with the Grad-CAM guidance term; predicts as ``model``.

    ``weight`` is a variable so a callback can schedule it (``guidance_schedule``); the logs show
    the term as ``outside``, the mean share of the map outside the tumour on masked slices.
    """

    def __init__(
        self,
        model: keras.Model,
        cam_layer: str,
        logits_layer: str = "predictions",
        cam_method: str = "grad_cam",
        graph: keras.Model | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if cam_method not in CAM_METHODS:
            raise ValueError(f"cam_method {cam_method!r}: one of {CAM_METHODS}")
        self.model = model
        head = model.get_layer(logits_layer)
        # ``graph`` maps the input to (cam layer, head input, output); pass it when ``model`` reuses
        # layers of another model (the VGG16 tail), whose ``.output`` would name the other graph.
        self.graph = graph or keras.Model(model.input, [model.get_layer(cam_layer).output, head.input, model.output])
        self.head = head
        self.cam_method = cam_method
        self.weight = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="guidance_weight")
        self.outside_tracker = keras.metrics.Mean(name="outside")
        self.built = True  # every layer is the built model's, as BackupAndRestore requires before fit()

    def call(self, inputs, training: bool = False):
        return self.model(inputs, training=training)

    @property
    def metrics(self):
        return [*super().metrics, self.outside_tracker]  # reset each epoch, reported in the logs with the rest

    def train_step(self, data):
        inputs, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        images, masks = inputs
        labels = tf.cast(labels, tf.int32)
        # A partial label (training.partial: one past the last class) has no outline and so no guidance;
        # any class stands in for its map's score, which the empty mask then leaves out.
        cam_labels = tf.minimum(labels, self.head.kernel.shape[-1] - 1)
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                features, penultimate, probabilities = self.graph(images, training=True)
                logits = tf.matmul(tf.cast(penultimate, tf.float32), self.head.kernel) + self.head.bias
                score = tf.reduce_sum(tf.gather(logits, cam_labels, axis=1, batch_dims=1))
            gradients = inner.gradient(score, features)
            features = tf.cast(features, tf.float32)
            gradients = tf.cast(gradients, tf.float32)
            if self.cam_method == "layer_cam":  # each position weighted by its own positive gradient
                weights = tf.stop_gradient(tf.nn.relu(gradients))
            else:  # Grad-CAM: one weight per channel, the mean gradient
                weights = tf.stop_gradient(tf.reduce_mean(gradients, axis=(1, 2), keepdims=True))
            cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))
            inside = mask_cells(tf.cast(masks, tf.float32), cam.shape[1:3])
            guided = tf.cast(tf.reduce_any(inside > 0, axis=(1, 2)), tf.float32)
            share = outside_share(cam, inside)
            outside = tf.reduce_sum(share * guided) / tf.maximum(tf.reduce_sum(guided), 1.0)
            loss = self.compute_loss(x=images, y=labels, y_pred=probabilities, sample_weight=sample_weight)
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(images)[0])
            total = loss + self.weight * outside
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(total, variables), variables)
        self.outside_tracker.update_state(outside)
        return self.compute_metrics(images, labels, probabilities, sample_weight=sample_weight)

    def test_step(self, data):
        logs = super().test_step(data)  # validation has no masks: the term is not measured there
        return {name: value for name, value in logs.items() if name != self.outside_tracker.name}


def guidance_schedule(guided: GuidedModel, weight: float, start_epoch: int, ramp_epochs: int):
    """A callback that sets the term's weight each epoch: 0 before ``start_epoch``, then a linear ramp to ``weight``.

    The network first learns the classes; a map pushed towards the tumour before it means
    anything only adds noise.
    """

    class GuidanceSchedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            progress = (epoch - start_epoch + 1) / max(ramp_epochs, 1)
            guided.weight.assign(weight * min(max(progress, 0.0), 1.0))

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            if logs is not None:
                logs["guidance_weight"] = float(guided.weight.numpy())

    return GuidanceSchedule()
