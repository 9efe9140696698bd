"""``scarce annotate``: a local web page for drawing scribbles and clicks on a dataset's images.

Why in scarce: the weak methods learn from scribbles, and a person who has none needs a way to
draw them and to see where the current model is wrong (``--run``) before drawing more. The page
writes ``<dataset>/scribbles/<stem>.png`` in the documented format (:mod:`scarce.data.scribbles`)
and nothing else; training reads that folder as it is (``method.scribbles=auto``).

* :mod:`scarce.annotate.session` — what the page reads and writes (images, scribbles, a run's
  predictions, the order of the images), without any web server: testable and reusable.
* :mod:`scarce.annotate.server` — the Flask app and the local server (``pip install
  "scarce[annotate]"``); the page itself is ``page.html`` (plain ``<canvas>``, no CDN).

Docs: docs/annotate.md. Importing this package imports neither Flask nor torch.
"""
