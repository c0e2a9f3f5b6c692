"""Stand-in for comfy_extras/nodes_train.py @ 12aacb9 (the V3 version): the pieces a training node reuses.

``TrainSampler`` has the real constructor and the real optimizer calls: every
``grad_acc`` forward/backward passes, ``optimizer.step()`` without a closure,
then a bare ``optimizer.zero_grad()``. ``bucket_latents`` is the bucket mode of
ComfyUI 0.8 (the ``bucket_mode`` input of its Train LoRA node): a list of
``(Bi, C, Hi, Wi)`` batches, one per resolution; each pass picks a bucket with a
probability proportional to its size, then up to ``batch_size`` images of it, whose
captions are found at the bucket's offset in the flattened conditioning list.
"""

from __future__ import annotations

import comfy.samplers
import torch
import torch.utils.checkpoint

from comfy_extras.nodes_custom_sampler import Noise_RandomNoise


class TrainSampler(comfy.samplers.Sampler):
    def __init__(
        self,
        loss_fn,
        optimizer,
        loss_callback=None,
        batch_size=1,
        grad_acc=1,
        total_steps=1,
        seed=0,
        training_dtype=torch.bfloat16,
        real_dataset=None,
        bucket_latents=None,
    ):
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.loss_callback = loss_callback
        self.batch_size = batch_size
        self.total_steps = total_steps
        self.grad_acc = grad_acc
        self.seed = seed
        self.training_dtype = training_dtype
        self.real_dataset = real_dataset
        self.bucket_latents = bucket_latents

    def fwd_bwd(self, model_wrap, sigmas, noise, latent, cond, indices, extra_args, bwd=True):
        sampling = model_wrap.inner_model.model_sampling
        xt = sampling.noise_scaling(sigmas, noise, latent, False)
        model_wrap.conds["positive"] = [cond[i] for i in indices]
        # enabled=: CPU autocast warns about float32 (ComfyUI trains on GPUs, where this does not come up).
        with torch.autocast(xt.device.type, dtype=self.training_dtype, enabled=self.training_dtype != torch.float32):
            prediction = model_wrap(xt.requires_grad_(True), sigmas.requires_grad_(True), **extra_args)
            loss = self.loss_fn(prediction, latent)
        if bwd:
            (loss / self.grad_acc).backward()
        return loss

    def _sigmas(self, model_wrap, count, device):
        sampling = model_wrap.inner_model.model_sampling
        return torch.tensor([sampling.percent_to_sigma(torch.rand((1,)).item()) for _ in range(count)]).to(device)

    def sample(
        self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False
    ):
        cond = model_wrap.conds["positive"]
        dataset_size = sigmas.size(0)
        for i in range(self.total_steps):
            noisegen = Noise_RandomNoise(self.seed + i * 1000)
            indices = torch.randperm(dataset_size)[: self.batch_size].tolist()
            if self.bucket_latents is not None:
                sizes = torch.tensor([len(bucket) for bucket in self.bucket_latents], dtype=torch.float32)
                chosen = torch.multinomial(sizes, 1).item()
                offset = int(sizes[:chosen].sum().item())
                within = torch.randperm(len(self.bucket_latents[chosen]))[: self.batch_size].tolist()
                latent = self.bucket_latents[chosen][within].to(latent_image)
                batch_noise = noisegen.generate_noise({"samples": latent})
                batch_sigmas = self._sigmas(model_wrap, len(within), latent.device)
                absolute = [offset + index for index in within]
                loss = self.fwd_bwd(model_wrap, batch_sigmas, batch_noise, latent, cond, absolute, extra_args)
            elif self.real_dataset is None:
                latent = torch.stack([latent_image[j] for j in indices])
                batch_noise = noisegen.generate_noise({"samples": latent})
                batch_sigmas = self._sigmas(model_wrap, len(indices), latent.device)
                loss = self.fwd_bwd(model_wrap, batch_sigmas, batch_noise, latent, cond, indices, extra_args)
            else:
                total = 0
                for index in indices:
                    latent = self.real_dataset[index].to(latent_image)
                    batch_noise = noisegen.generate_noise({"samples": latent})
                    batch_sigmas = self._sigmas(model_wrap, 1, latent.device)
                    total += self.fwd_bwd(
                        model_wrap, batch_sigmas, batch_noise, latent, cond, [index], extra_args, False
                    )
                loss = total / self.grad_acc / len(indices)
                loss.backward()
            if self.loss_callback:
                self.loss_callback(loss.item())
            if (i + 1) % self.grad_acc == 0:
                self.optimizer.step()
                self.optimizer.zero_grad()
        return torch.zeros_like(latent_image)


class BiasDiff(torch.nn.Module):
    """A trainable difference added to a 1-D weight or a bias."""

    def __init__(self, bias: torch.nn.Parameter) -> None:
        super().__init__()
        self.bias = bias

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        return (b.to(self.bias) + self.bias).to(b.dtype)


def find_all_highest_child_module_with_forward(model, result=None, name=None):
    """The outermost non-container modules below ``model`` (what gradient checkpointing wraps)."""
    containers = (torch.nn.ModuleList, torch.nn.Sequential, torch.nn.ModuleDict)
    if result is None:
        result = []
    elif not isinstance(model, containers):
        result.append(model)
        return result
    for child in model.children():
        find_all_highest_child_module_with_forward(child, result)
    return result


def patch(m) -> None:
    """Run ``m.forward`` under activation checkpointing."""
    original = m.forward

    def checkpointed(*args, **kwargs):
        return torch.utils.checkpoint.checkpoint(lambda a, k: original(*a, **k), args, kwargs, use_reentrant=False)

    m.org_forward = original
    m.forward = checkpointed


def unpatch(m) -> None:
    if hasattr(m, "org_forward"):
        m.forward = m.org_forward
        del m.org_forward
