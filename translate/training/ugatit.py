"""UGATIT in the unpaired trainer (translate.training.unpaired): networks, optimizers, the step.

The step (`replica_step`) makes one forward pass and one persistent tape for both updates, as
the pix2pix and CycleGAN steps: G and D are updated simultaneously from the same forward pass
(the TF tutorials' scheme). The published code updates D first and then re-runs the generators
and discriminators for G's update (8 generator and 12 discriminator passes per step); here it is
6 generator and 8 discriminator passes, and each generator's two calls on real images
(translation and identity) share one batch, as do each discriminator's real and fake inputs
(`batch_calls`; instance norm and LIN/AdaLIN are per example, so a shared batch computes the
separate calls' outputs; spectral norm then runs one power iteration per discriminator and step
instead of two).

Losses (weights adversarial 1, cycle 10, identity 10, CAM 1000): LSGAN on the patch logits and
the CAM logits of the global and local discriminators of each domain, L1 cycle and identity, and
the generator's CAM BCE (G_ab's CAM says "source domain" (1) on photos, "not" (0) on anime).
Weight decay 1e-4 is PyTorch's Adam `weight_decay` (L2 added to every gradient, all variables);
Adam(lr 1e-4, 0.5, 0.999) is the fused kernel (translate.training.optimizers). rho is clipped to [0, 1]
after every update by the variables' constraint, applied by the optimizer.

With the landmark channel (`landmark_channel`) generators take RGB + layer and output RGB; the
cycle maps back with the source's layer; discriminators see RGB only (as CycleGAN, see
translate/models/cyclegan.py for why).
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from translate.training import optimizers, schedules
from translate.models import ugatit
from translate.training.unpaired import Family

D_NAMES = ("disc_a_global", "disc_a_local", "disc_b_global", "disc_b_local")


def add_weight_decay(grads, variables, decay: float):
    """g + decay * w (PyTorch Adam's coupled weight decay), scaled for the replicas' SUM."""
    if not decay:
        return list(grads)
    ctx = tf.distribute.get_replica_context()
    decay = decay / (ctx.num_replicas_in_sync if ctx is not None else 1)
    return [g if g is None else g + decay * v for g, v in zip(grads, variables)]


class UGATITFamily(Family):
    name = "ugatit"
    defaults = {"light": False, "ch": ugatit.CH, "n_res": ugatit.N_RES, "n_dis": ugatit.N_DIS,
                "adv_weight": ugatit.ADV_WEIGHT, "cycle_weight": ugatit.CYCLE_WEIGHT,
                "identity_weight": ugatit.IDENTITY_WEIGHT, "cam_weight": ugatit.CAM_WEIGHT,
                "weight_decay": ugatit.WEIGHT_DECAY, "batch_calls": True, "jit_compile": False}
    model_keys = ("light", "ch", "n_res", "n_dis")
    default_learning_rate = ugatit.LEARNING_RATE

    def check(self) -> None:
        o = self.options
        ugatit.check_sizes(self.cfg.image_size, int(o["n_dis"]))
        for k in ("ch", "n_res"):
            if int(o[k]) < 1:
                raise ValueError(f"--{k} must be >= 1, got {o[k]}")
        for k in ("adv_weight", "cycle_weight", "identity_weight", "cam_weight", "weight_decay"):
            if float(o[k]) < 0:
                raise ValueError(f"--{k} must be >= 0, got {o[k]}")

    # ------------------------------------------------------------------ build
    def build(self, in_channels: int) -> None:
        o, cfg = self.options, self.cfg
        self.in_channels = in_channels
        self.nets = ugatit.build_networks(cfg.image_size, in_channels, ch=int(o["ch"]),
                                          n_res=int(o["n_res"]), n_dis=int(o["n_dis"]),
                                          light=bool(o["light"]))
        self.g_ab, self.g_ba = self.nets["generator_ab"], self.nets["generator_ba"]
        self.ds = [self.nets[n] for n in D_NAMES]
        self.g_vars = self.g_ab.trainable_variables + self.g_ba.trainable_variables
        self.d_vars = [v for d in self.ds for v in d.trainable_variables]
        self.schedule = schedules.LinearDecay(self.lr, cfg.max_steps, cfg.decay_start)
        adam = lambda: optimizers.FusedAdam(self.schedule, beta_1=cfg.beta1, beta_2=ugatit.BETA2,  # noqa: E731
                                            epsilon=1e-8)
        self.g_opt, self.d_opt = adam(), adam()
        self.g_opt.build(self.g_vars)
        self.d_opt.build(self.d_vars)
        self._grads = self._grads_fn
        if o["jit_compile"]:
            self._grads = tf.function(self._grads_fn, jit_compile=True)

    def checkpoint_objects(self) -> Dict:
        return {**self.nets, "g_optimizer": self.g_opt, "d_optimizer": self.d_opt}

    @property
    def step_counter(self):
        return self.g_opt

    def learning_rate(self) -> float:
        return float(self.schedule(self.g_opt.iterations))

    def translate(self, x: tf.Tensor, direction: str) -> tf.Tensor:
        gen = self.g_ab if direction == "ab" else self.g_ba
        return gen(x, training=False)[0]

    def log_line(self, m: Dict[str, float]) -> str:
        return (f"G {m['G_total']:.3f} (adv {m['G_adv']:.3f}, cycle {m['G_cycle']:.4f}, "
                f"identity {m['G_identity']:.4f}, cam {m['G_cam']:.4f})  D {m['D_total']:.3f}")

    # ------------------------------------------------------------------ step
    def _pair(self, fn, x, y):
        """fn on x and on y: one call on the stacked batch (batch_calls) or two calls."""
        if self.options["batch_calls"]:
            n = tf.shape(x)[0]
            out = fn(tf.concat([x, y], 0))
            return [o[:n] for o in out], [o[n:] for o in out]
        return fn(x), fn(y)

    @tf.autograph.experimental.do_not_convert  # plain Python control flow; saves tracing time
    def _grads_fn(self, photo, anime):
        o = self.options
        adv, cyc, idt, cam = (float(o[k]) for k in ("adv_weight", "cycle_weight", "identity_weight",
                                                    "cam_weight"))
        avg = lambda v: tf.nn.compute_average_loss(v, global_batch_size=self.cfg.batch_size)  # noqa: E731
        real_a, real_b = photo[..., :3], anime[..., :3]
        lm_a, lm_b = photo[..., 3:], anime[..., 3:]  # empty without the landmark channel
        g_ab = lambda x: self.g_ab(x, training=True)  # noqa: E731
        g_ba = lambda x: self.g_ba(x, training=True)  # noqa: E731
        with tf.GradientTape(persistent=True) as tape:
            (fake_b, cam_ab_a, _), (idt_b, cam_ab_b, _) = self._pair(g_ab, photo, anime)
            (fake_a, cam_ba_b, _), (idt_a, cam_ba_a, _) = self._pair(g_ba, anime, photo)
            rec_a = g_ba(tf.concat([fake_b, lm_a], -1))[0]
            rec_b = g_ab(tf.concat([fake_a, lm_b], -1))[0]
            d_loss = {}
            g_adv = 0.0
            for name, d in zip(D_NAMES, self.ds):
                real, fake = (real_a, fake_a) if "_a_" in name else (real_b, fake_b)
                real_out, fake_out = self._pair(lambda x, d=d: d(x, training=True), real, fake)
                d_loss[name] = ugatit.d_adversarial(real_out, fake_out)
                g_adv += ugatit.g_adversarial(fake_out)
            cycle = ugatit.l1(rec_a, real_a) + ugatit.l1(rec_b, real_b)
            identity = ugatit.l1(idt_a, real_a) + ugatit.l1(idt_b, real_b)
            cam_loss = (ugatit.cam_bce(cam_ab_a, 1.0) + ugatit.cam_bce(cam_ab_b, 0.0)
                        + ugatit.cam_bce(cam_ba_b, 1.0) + ugatit.cam_bce(cam_ba_a, 0.0))
            g_total = avg(adv * g_adv + cyc * cycle + idt * identity + cam * cam_loss)
            d_total = avg(adv * tf.add_n(list(d_loss.values())))
        g_grads = tape.gradient(g_total, self.g_vars)
        d_grads = tape.gradient(d_total, self.d_vars)
        del tape
        metrics = {"G_total": g_total, "G_adv": avg(g_adv), "G_cycle": avg(cycle),
                   "G_identity": avg(identity), "G_cam": avg(cam_loss), "D_total": d_total}
        metrics.update({f"D_{k[5:]}": avg(v) for k, v in d_loss.items()})
        return g_grads, d_grads, metrics

    @tf.autograph.experimental.do_not_convert
    def replica_step(self, photo: tf.Tensor, anime: tf.Tensor) -> Dict[str, tf.Tensor]:
        g_grads, d_grads, metrics = self._grads(photo, anime)
        wd = float(self.options["weight_decay"])
        self.g_opt.apply_gradients(zip(add_weight_decay(g_grads, self.g_vars, wd), self.g_vars))
        self.d_opt.apply_gradients(zip(add_weight_decay(d_grads, self.d_vars, wd), self.d_vars))
        return metrics
