using CertPortal.Data;
using CertPortal.Enrollment;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Infrastructure;

/// <summary>Writes made to form one group of the <see cref="GroupCommitWriter"/>: the writer held by a gate while they queue, on either
/// database.</summary>
internal static class WriterGroups
{
    /// <summary>A service from a scope of its own, as each request has, kept in <paramref name="scopes"/> to be disposed after the test.</summary>
    internal static T InNewScope<T>(this IServiceProvider services, List<AsyncServiceScope> scopes) where T : notnull
    {
        var scope = services.CreateAsyncScope();
        scopes.Add(scope);
        return scope.ServiceProvider.GetRequiredService<T>();
    }

    /// <summary>Enrollments queued while the writer is held (<see cref="Gate"/>), so that they form one group: their outcomes, and the
    /// commits made from just before the gate's release (the gate's own group counted).</summary>
    internal static async Task<(Outcome<EnrollmentResult>[] Outcomes, long Commits)> EnrollInOneGroupAsync(IServiceProvider services,
        IReadOnlyList<(string Token, string Csr)> requests)
    {
        var writer = services.GetRequiredService<GroupCommitWriter>();
        var (started, release, gate) = Gate(writer);
        await started;
        var scopes = new List<AsyncServiceScope>();
        var enrollments = new List<Task<Outcome<EnrollmentResult>>>();
        var commitsBefore = writer.Commits;
        try
        {
            foreach (var (token, csr) in requests)
            {
                var scope = services.CreateAsyncScope();
                scopes.Add(scope);
                enrollments.Add(scope.ServiceProvider.GetRequiredService<EnrollmentService>().EnrollAsync(new EnrollmentRequest(token, csr), "test", CancellationToken.None));
            }
            await WaitUntil(() => writer.Queued == requests.Count);
        }
        finally
        {
            release(); // also when the wait failed: a blocked writer would fail the other tests
        }
        await gate;
        var outcomes = await Task.WhenAll(enrollments);
        foreach (var scope in scopes) await scope.DisposeAsync();
        return (outcomes, writer.Commits - commitsBefore);
    }

    internal static Task WaitUntil(Func<bool> condition) =>
        Eventually.TrueAsync(condition, () => "timed out waiting for the writer's queue");

    /// <summary>A unit that holds the writer until released, so the writes queued meanwhile form the next group.</summary>
    internal static (Task Started, Action Release, Task Done) Gate(GroupCommitWriter writer)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var done = writer.WriteAsync(async (_, _) =>
        {
            started.TrySetResult();
            await release.Task;
            return true;
        });
        return (started.Task, () => release.TrySetResult(), done);
    }

}
