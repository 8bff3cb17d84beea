// Kotlin 2: sealed interfaces, data objects, value classes, when with guards avoided,
// trailing commas, builder inference.
package modern

sealed interface Result<out T> {
    data class Ok<T>(val value: T) : Result<T>
    data class Failed(val error: String) : Result<Nothing>
    data object Pending : Result<Nothing>
}

@JvmInline
value class UserId(val raw: Long)

fun <T> Result<T>.describe(): String = when (this) {
    is Result.Ok -> "ok: $value"
    is Result.Failed -> "failed: ${error.uppercase()}"
    Result.Pending -> "pending"
}

suspend fun fetchAll(ids: List<UserId>): Map<UserId, String> = buildMap {
    for (id in ids) {
        put(id, id.raw.toString())
    }
}

fun main() {
    val results = listOf(Result.Ok(1), Result.Pending, Result.Failed("x"),)
    results.forEach { println(it.describe()) }
}
