using Microsoft.AspNetCore.Http.HttpResults;

namespace CertPortal;

public enum FailureKind
{
    BadRequest = 400,
    Forbidden = 403,
    NotFound = 404,
    Conflict = 409,
    Unprocessable = 422,
    /// <summary>Nothing the client did: the service cannot do this now (the issuing CA has ended).</summary>
    ServiceUnavailable = 503,
}

/// <summary>An expected failure: something the client sent or asked for that we refuse. Exceptions are for bugs.</summary>
public sealed record Failure(FailureKind Kind, string Title, string Detail)
{
    public static Failure BadRequest(string detail) => new(FailureKind.BadRequest, "The request is malformed.", detail);
    public static Failure Forbidden(string title, string detail) => new(FailureKind.Forbidden, title, detail);
    public static Failure NotFound(string detail) => new(FailureKind.NotFound, "Not found.", detail);
    public static Failure Conflict(string detail) => new(FailureKind.Conflict, "The request conflicts with the current state.", detail);
    public static Failure Unprocessable(string title, string detail) => new(FailureKind.Unprocessable, title, detail);

    public ProblemHttpResult ToProblem() => TypedResults.Problem(detail: Detail, statusCode: (int)Kind, title: Title);
}

/// <summary>Either a value or a <see cref="Failure"/>.</summary>
public readonly struct Outcome<T>
{
    private Outcome(T? value, Failure? failure) { Value = value; Failure = failure; }

    public T? Value { get; }
    public Failure? Failure { get; }
    public bool Succeeded => Failure is null;

    public static implicit operator Outcome<T>(T value) => new(value, null);
    public static implicit operator Outcome<T>(Failure failure) => new(default, failure);
}
