//! The reduction tree: which files each level's tasks sum, and where everything lives.
//!
//! Level 0 sums the `files` input files `group_size` at a time; each further level sums the
//! previous level's partial files `group_size` at a time, until a level has one task, the
//! root, which writes the averages. These are the engine's tree levels
//! ([`conveyor_queue::tree`]) with level 0's tasks as leaves: a task of level k is the
//! continuation of its own members of level k - 1. Names are a function of (level, index),
//! so a task that runs twice writes the same file with the same bytes.

/// Tasks per level, from level 0 to the root (the last, with one); there are always two
/// levels or more, so that the root is a continuation.
pub fn level_tasks(files: u64, group_size: u64) -> Vec<u64> {
    conveyor_queue::tree::tree_levels(files.div_ceil(group_size), group_size)
}

/// Where job `job`'s files live: every path of its tasks is under it.
pub fn location(job: i64) -> String {
    format!("average/{job}")
}

/// Whether `path` is a file of job `job`: under [`location`], without `.`, `..` or empty
/// steps. A task's arguments are checked with it before anything is read or written, so
/// no argument can reach another job's files or leave the store's prefix.
pub fn owned_by(job: i64, path: &str) -> bool {
    let prefix = format!("{}/", location(job));
    path.strip_prefix(&prefix)
        .is_some_and(|rest| rest.split('/').all(|step| !matches!(step, "" | "." | "..")))
}

/// Input file `index`.
pub fn input_path(location: &str, index: u64) -> String {
    format!("{location}/input/{index:06}.txt")
}

/// The partial sum written by task `index` of `level`.
pub fn partial_path(location: &str, level: u32, index: u64) -> String {
    format!("{location}/level-{level}/{index:06}.bin")
}

/// The averages.
pub fn output_path(location: &str) -> String {
    format!("{location}/average.txt")
}

/// The files task `index` of `level` sums.
pub fn task_inputs(
    location: &str,
    files: u64,
    group_size: u64,
    level: u32,
    index: u64,
) -> Vec<String> {
    let inputs_of_level = if level == 0 {
        files
    } else {
        level_tasks(files, group_size)[level as usize - 1]
    };
    let first = index * group_size;
    let last = (first + group_size).min(inputs_of_level);
    (first..last)
        .map(|i| {
            if level == 0 {
                input_path(location, i)
            } else {
                partial_path(location, level - 1, i)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_shrink_by_the_group_size_to_one() {
        assert_eq!(level_tasks(1000, 5), [200, 40, 8, 2, 1]);
        assert_eq!(level_tasks(1, 5), [1, 1]);
        assert_eq!(level_tasks(5, 5), [1, 1]);
        assert_eq!(level_tasks(6, 5), [2, 1]);
        assert_eq!(level_tasks(7, 2), [4, 2, 1]);
    }

    #[test]
    fn every_file_of_a_level_is_summed_once() {
        for (files, group) in [(1000, 5), (7, 2), (26, 5), (1, 3)] {
            let levels = level_tasks(files, group);
            for (level, &tasks) in levels.iter().enumerate() {
                let level = level as u32;
                let all: Vec<String> = (0..tasks)
                    .flat_map(|i| task_inputs("j", files, group, level, i))
                    .collect();
                let expected = if level == 0 {
                    files
                } else {
                    levels[level as usize - 1]
                };
                assert_eq!(
                    all.len() as u64,
                    expected,
                    "files {files} group {group} level {level}"
                );
                let unique: std::collections::BTreeSet<_> = all.iter().collect();
                assert_eq!(unique.len(), all.len());
            }
        }
        assert_eq!(
            task_inputs("j", 7, 2, 1, 1),
            ["j/level-0/000002.bin", "j/level-0/000003.bin"]
        );
        assert_eq!(task_inputs("j", 7, 2, 0, 3), ["j/input/000006.txt"]);
    }
}
