"""Three overlapping stages joined by bounded queues: a producer thread (decoding), the calling thread (the model)
and a consumer thread (encoding).

    run_pipeline(produce, stage, consume, depth=4)

``produce()`` is an iterable run on the producer thread; each item goes to ``stage.feed(item)`` on the calling
thread, which returns a list of outputs; at the end ``stage.flush()`` returns the last ones; each output goes to
``consume(output)`` on the consumer thread. At most ``depth`` items wait in each queue, so memory stays flat
whatever the length. An exception in any stage stops the others and is raised again in the caller (the same
exception object, so its type and message are the original ones); KeyboardInterrupt in the caller stops the
threads before it propagates. The model runs on the calling thread because CUDA streams, autocast and Ctrl-C
belong there.
"""
import queue
import threading

_END = object()
_POLL = 0.1


class _Stopped(Exception):
    """Another stage failed; this one gives up quietly."""


class _Failure:
    def __init__(self, error):
        self.error = error


def _put(q, item, stop):
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def _get(q, stop):
    while True:
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            if stop.is_set():
                raise _Stopped from None


def run_pipeline(produce, stage, consume, depth=4):
    """Run the three stages until ``produce`` is exhausted and everything is consumed (see the module
    docstring). Returns None; raises the first error of any stage."""
    stop = threading.Event()
    inbox, outbox = queue.Queue(depth), queue.Queue(depth)
    errors = []

    def producer():
        try:
            for item in produce():
                _put(inbox, item, stop)
            _put(inbox, _END, stop)
        except _Stopped:
            pass
        except BaseException as error:  # noqa: B902 - handed to the caller
            errors.append(error)
            try:
                _put(inbox, _Failure(error), stop)
            except _Stopped:
                pass

    def consumer():
        try:
            while True:
                item = _get(outbox, stop)
                if item is _END:
                    return
                consume(item)
        except _Stopped:
            pass
        except BaseException as error:  # noqa: B902
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=producer, name="engine-decode", daemon=True),
               threading.Thread(target=consumer, name="engine-encode", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        while True:
            item = _get(inbox, stop)
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.error
            for output in stage.feed(item):
                _put(outbox, output, stop)
        for output in stage.flush():
            _put(outbox, output, stop)
        _put(outbox, _END, stop)
        threads[1].join()
        if errors:
            raise errors[0]
    except _Stopped:
        stop.set()
        for thread in threads:
            thread.join()
        raise errors[0] from None
    except BaseException:
        stop.set()
        for thread in threads:
            thread.join()
        raise
    finally:
        stop.set()
    for thread in threads:
        thread.join()
