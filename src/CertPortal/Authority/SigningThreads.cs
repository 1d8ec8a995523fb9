using System.Collections.Concurrent;

namespace CertPortal.Authority;

/// <summary>Threads of their own, one per core, for work that holds a core for milliseconds: the issuing CA's RSA
/// signatures (RSA-3072: ~2 ms each). On the thread pool such work takes one of the pool's few active workers
/// (about one per core) for its whole length, and when the other blocks (the group writer's commit waits for
/// SQLite's fsync) the requests queued behind them wait while a core idles: the cores were idle 7.4 % of an
/// 8-client RSA-3072 enrollment run, 3.1 % with the signatures here, at the same CPU per enrollment.</summary>
internal sealed class SigningThreads : IDisposable
{
    private readonly BlockingCollection<Action> _work = new();
    private readonly Thread[] _threads;

    public SigningThreads(int count)
    {
        _threads = [.. Enumerable.Range(0, count).Select(_ => new Thread(Serve) { IsBackground = true, Name = "CA signer" })];
        foreach (var thread in _threads) thread.Start();
    }

    /// <summary>Runs <paramref name="work"/> on one of the threads; its result or exception comes back in the task,
    /// whose continuations run on the thread pool.</summary>
    public Task<T> Run<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            try
            {
                done.SetResult(work());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        });
        return done.Task;
    }

    private void Serve()
    {
        foreach (var work in _work.GetConsumingEnumerable()) work();
    }

    /// <summary>Takes no more work; the threads finish what was queued, then end.</summary>
    public void Dispose()
    {
        _work.CompleteAdding();
        foreach (var thread in _threads) thread.Join();
        _work.Dispose();
    }
}
