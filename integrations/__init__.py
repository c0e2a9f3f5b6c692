"""Adapters that plug the optimizers into trainers that have no plugin mechanism.

One subpackage per trainer (installed as ``personalized.integrations.<trainer>``).
Each is opt-in: ``personalized install <trainer> ...`` writes a ``.pth`` file into
the trainer's environment that imports the tiny, torch-free ``personalized_hooks``
module, which waits for the trainer's own modules to be imported before it
touches anything.
"""
