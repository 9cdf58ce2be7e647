"""Baseline agents (DrQ-v2, A-LIX). Never imports the training loop in `drm`."""
